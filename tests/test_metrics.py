"""AP, mAP and confusion rates on cases worked out by hand."""

import math

import numpy as np
import pytest

from gender import CLASS_NAMES
from gender.metrics import average_precision, evaluate, mean_ap
from gender.output import format_report


def test_class_names_fix_the_label_order():
    assert CLASS_NAMES == ("man", "woman")  # label 0 = man, label 1 = woman


def test_ap_hand_case_four_images():
    labels = [1, 0, 1, 0]  # woman, man, woman, man
    p_woman = [0.9, 0.8, 0.7, 0.1]
    # Ranked by P(woman): W(0.9) M(0.8) W(0.7) M(0.1): precision at the women = 1/1, 2/3.
    assert average_precision([x == 1 for x in labels], p_woman) == pytest.approx((1 + 2 / 3) / 2)
    # Ranked by 1 - p: M(0.9) W(0.3) M(0.2) W(0.1): precision at the men = 1/1, 2/3.
    ap, map_ = mean_ap(labels, p_woman)
    assert ap == {"man": pytest.approx(5 / 6), "woman": pytest.approx(5 / 6)}
    assert map_ == pytest.approx(5 / 6)


def test_ap_hand_case_asymmetric():
    labels = [1, 1, 0, 1, 0]
    p_woman = [0.9, 0.4, 0.6, 0.8, 0.2]
    # By p: W(.9) W(.8) M(.6) W(.4) M(.2): women at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3.
    # By 1 - p = [.1, .6, .4, .2, .8]: M(.8) W(.6) M(.4) W(.2) W(.1): men at ranks 1 and 3
    # -> (1 + 2/3) / 2.
    ap, map_ = mean_ap(labels, p_woman)
    assert ap["woman"] == pytest.approx(2.75 / 3)
    assert ap["man"] == pytest.approx(5 / 6)
    assert map_ == pytest.approx((2.75 / 3 + 5 / 6) / 2)


def test_ap_is_not_interpolated():
    # Ranks M W W: precision 1/2 and 2/3 at the two women. Step-wise AP = (1/2 + 2/3) / 2;
    # an interpolated AP (best precision at this recall or more) would give 2/3.
    ap = average_precision([False, True, True], [0.9, 0.8, 0.7])
    assert ap == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ap != pytest.approx(2 / 3)


def test_ap_perfect_and_reversed_ranking():
    assert average_precision([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # Worst ranking of 2 positives among 4: positives at ranks 3 and 4 -> (1/3 + 2/4) / 2.
    worst = average_precision([False, False, True, True], [0.9, 0.8, 0.2, 0.1])
    assert worst == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_ap_without_positives_is_nan():
    assert math.isnan(average_precision([False, False], [0.3, 0.7]))


def test_evaluate_confusion_rates_hand_case():
    labels = [1, 1, 0, 1, 0]
    p_woman = [0.9, 0.4, 0.6, 0.8, 0.2]
    # predicted (p >= 0.5): [W, M, W, W, M]
    # true man:   image 2 -> woman, image 4 -> man          => man row   [1, 1]
    # true woman: images 0, 3 -> woman, image 1 -> man      => woman row [1, 2]
    report = evaluate(labels, p_woman)
    assert report["n"] == 5
    assert report["correct"] == 3
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["confusion_matrix"] == [[1, 1], [1, 2]]
    assert report["confusion_rates"] == {
        "man==>man": pytest.approx(0.5),
        "man==>woman": pytest.approx(0.5),
        "woman==>man": pytest.approx(1 / 3),
        "woman==>woman": pytest.approx(2 / 3),
    }
    assert report["precision"] == {"man": pytest.approx(0.5), "woman": pytest.approx(2 / 3)}
    assert report["recall"] == {"man": pytest.approx(0.5), "woman": pytest.approx(2 / 3)}
    assert report["f1"] == {"man": pytest.approx(0.5), "woman": pytest.approx(2 / 3)}
    assert report["map"] == pytest.approx((2.75 / 3 + 5 / 6) / 2)


def test_threshold_is_inclusive_for_woman():
    report = evaluate([1, 0], [0.5, 0.49])
    assert report["confusion_matrix"] == [[1, 0], [0, 1]]
    assert report["accuracy"] == 1.0


def test_each_true_class_rates_sum_to_one():
    report = evaluate([0, 0, 0, 1, 1, 1, 1], [0.1, 0.7, 0.4, 0.9, 0.2, 0.6, 0.55])
    rates = report["confusion_rates"]
    for true in CLASS_NAMES:
        assert sum(rates[f"{true}==>{p}"] for p in CLASS_NAMES) == pytest.approx(1.0)


def test_report_text_has_the_seed_lines():
    text = format_report(evaluate([1, 1, 0, 1, 0], [0.9, 0.4, 0.6, 0.8, 0.2]), "hand case")
    assert "3 images correctly predicted among 5 evaluation images" in text
    assert "mAP(%): 87.50" in text
    assert "AP woman(%): 91.67" in text
    assert "AP man(%): 83.33" in text
    woman_man = next(line for line in text.splitlines() if line.startswith("woman==>man"))
    assert woman_man.split()[-1] == "0.333"


def test_equal_error_threshold_hand_computed():
    from gender.metrics import equal_error_threshold

    # men 0.1 0.2 0.6 0.7, women 0.65 0.8 0.9 0.95: at 0.5 men's error is 2/4, women's 0/4;
    # between 0.7 and 0.8 men's is 0 and women's 1/4; between 0.65 and 0.7 both are 1/4.
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    p_woman = [0.1, 0.2, 0.6, 0.7, 0.65, 0.8, 0.9, 0.95]
    assert equal_error_threshold(labels, p_woman) == pytest.approx(0.675)


def test_equal_error_threshold_keeps_half_when_it_is_already_even():
    from gender.metrics import equal_error_threshold

    assert equal_error_threshold([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 0.5


def test_average_precision_is_sklearns():
    """The numpy AP equals scikit-learn's average_precision_score, ties included."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 120))
        positive = rng.random(n) < rng.random()
        scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # few decimals: many ties
        if positive.any():
            expected = average_precision_score(positive, scores)
            assert average_precision(positive, scores) == pytest.approx(expected, abs=1e-12)


def test_person_report_weighs_each_person_the_same():
    from gender.metrics import person_report

    labels = [0, 0, 0, 0, 0, 1, 1, 1]
    persons = ["a", "a", "a", "a", "b", "c", "c", "d"]
    # a: 2 of 4 images wrong; b: right; c: 1 of 2 wrong; d: wrong
    p_woman = [0.9, 0.9, 0.1, 0.1, 0.2, 0.3, 0.8, 0.1]
    report = person_report(labels, p_woman, persons, threshold=0.5)
    assert report["persons"] == {"man": 2, "woman": 2}
    assert report["error_rate"]["man"] == pytest.approx(0.25)  # (2/4 + 0) / 2, not 2/5
    assert report["error_rate"]["woman"] == pytest.approx(0.75)  # (1/2 + 1) / 2, not 2/3
    assert report["balanced_accuracy"] == pytest.approx(0.5)
    assert report["accuracy"] == pytest.approx(1 - (0.5 + 0 + 0.5 + 1) / 4)
    # wrong on more than half of their images: d only
    assert report["wrong_persons"] == {"man": 0, "woman": 1}
    # one image per person: the per-image numbers
    single = person_report(labels, p_woman, [str(i) for i in range(8)], threshold=0.5)
    plain = evaluate(labels, p_woman, 0.5)
    assert single["error_rate"] == pytest.approx(plain["error_rate"])
    assert single["balanced_accuracy"] == pytest.approx(plain["balanced_accuracy"])


def test_equal_error_threshold_weighted_by_person():
    from gender.metrics import equal_error_threshold, person_weights

    # one man filmed in 8 frames, all at P(woman) 0.7; three other men at 0.1, 0.2, 0.3;
    # four women at 0.4, 0.6, 0.8, 0.9
    p_woman = [0.7] * 8 + [0.1, 0.2, 0.3] + [0.4, 0.6, 0.8, 0.9]
    labels = [0] * 11 + [1] * 4
    persons = ["m0"] * 8 + ["m1", "m2", "m3", "w0", "w1", "w2", "w3"]
    # per image the frames decide: 8 of 11 men's images at 0.7 pull the threshold up to 0.65
    # (men's error 8/11, women's 2/4: the closest the two get)
    assert equal_error_threshold(labels, p_woman) == pytest.approx(0.65)
    # per person that man is 1 of 4: at 0.5 men's error is 1/4 and women's 1/4
    weights = person_weights(persons)
    assert weights[0] == pytest.approx(1 / 8) and weights[8] == 1
    assert equal_error_threshold(labels, p_woman, weights) == pytest.approx(0.5)
    # weights of 1 are the unweighted threshold
    assert equal_error_threshold(labels, p_woman, np.ones(15)) == pytest.approx(0.65)

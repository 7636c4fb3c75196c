"""What every bench prints first, and the model and images they share (imports no TensorFlow)."""

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FACES_UTK = SHARED / "data" / "faces_utk"
BUNDLED = ROOT / "weights" / "pretrained" / "face.keras"
STANDIN_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "gender-bench-standin"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_notop.weights.h5"


def describe() -> str:
    """CPU model, cores, memory, load and the versions that matter, as a few lines."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    versions = []
    for package in ("tensorflow", "keras", "ai-edge-litert", "numpy", "opencv-python"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    load = os.getloadavg()
    return (
        f"machine: {cpu}, {os.cpu_count()} cores{memory}, {platform.system()} "
        f"{platform.release()}\n"
        f"python {platform.python_version()}; {', '.join(versions)}\n"
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(other jobs on the machine slow every absolute figure; ratios are measured in one run)"
    )


def face_weights(weights=None) -> Path:
    """The model to measure: `weights`, else the bundled face model, else a stand-in.

    The stand-in is an ImageNet MobileNetV2 at 128x128 with an untrained head (what the bundled
    face model is), built once into STANDIN_DIR and exported: its speed is the real one, its
    answers are not.
    """
    if weights:
        return Path(weights)
    if BUNDLED.is_file():
        return BUNDLED
    standin = STANDIN_DIR / "face.keras"
    if not (STANDIN_DIR / "face.tflite").is_file():
        print(f"no bundled model at {BUNDLED}: building a mobilenetv2 stand-in in {STANDIN_DIR}")
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1])\n"
            "from gender.console import quiet; quiet()\n"
            "from pathlib import Path; from models import create_model\n"
            "from gender.export import export_all\n"
            "d = Path(sys.argv[2]); d.mkdir(parents=True, exist_ok=True)\n"
            "m = create_model('mobilenetv2', backbone_weights=sys.argv[3] or 'imagenet')\n"
            "m.save(d / 'face.keras')\n"
            "(d / 'run.json').write_text(json.dumps({'model': 'mobilenetv2', "
            "'image_size': [128, 128], 'class_names': ['man', 'woman']}))\n"
            "export_all(d / 'face.keras')\n"
        )
        backbone = str(MOBILENET_WEIGHTS) if MOBILENET_WEIGHTS.is_file() else ""
        subprocess.run(
            [sys.executable, "-c", code, str(ROOT), str(STANDIN_DIR), backbone],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return standin


def link_sample(source: Path, folder: Path, per_class: int) -> Path:
    """folder/{man,woman}/ with symbolic links to the first `per_class` images of each class."""
    for name in ("man", "woman"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / name).iterdir())[:per_class]:
            target = folder / name / path.name
            if not target.exists():
                # absolute: a relative target would resolve from the link's folder, not ours
                os.symlink(path.absolute(), target)
    return folder

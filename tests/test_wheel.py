"""The built wheel, installed into a fresh venv, works outside the repository: its console
scripts, the shipped flagfiles (``--flagfile=tiny.flags``), training, evaluation and
prediction on a folder; tests and fixtures are not in it.

The venv is fresh for tada-keras (the wheel is its only install) and borrows the other
dependencies from this environment through a ``.pth`` line, so the test needs no network
and takes about a minute; ``make wheel-check`` does the same with a full, networked
``pip install`` of the wheel and its dependencies.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("tada-train", "tada-evaluate", "tada-predict", "tada-export", "tada-demo",
           "tada-experiments")
_SKIP = shutil.ignore_patterns(".git", ".venv", ".tfds", "runs", "build", "*.egg-info",
                               "__pycache__", ".shim")


def _build_wheel(tmp_path) -> str:
    source = tmp_path / "source"  # a copy: building writes build/ next to setup.py
    shutil.copytree(ROOT, source, ignore=_SKIP)
    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "-w", str(dist), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = os.listdir(dist)
    return str(dist / wheel)


def _fresh_venv(tmp_path, wheel) -> str:
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    # The dependencies of this environment, after the venv's own site-packages (a .pth
    # line adds a folder; the .pth files inside it, e.g. an editable install, stay inert).
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site.strip(), "zz_dependencies.pth"), "w") as f:
        f.write("\n".join(sorted(outer)) + "\n")
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           wheel], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(venv / "bin")


def test_wheel_contents_and_console_scripts_outside_the_repository(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "tada_keras/configs/tiny.flags" in names and "tada_keras/configs/demo.flags" in names
    assert not [n for n in names if n.endswith("_test.py") or "/dummy_data/" in n
                or n.endswith("make_dummy_data.py")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{s} = " in text for s in SCRIPTS), text

    bin_dir = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")

    def run(script, *args):
        proc = subprocess.run([os.path.join(bin_dir, script), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{script}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc

    where = run("python", "-c", "import tada_keras, tada_datasets; "
                "print(tada_keras.__file__); print(tada_datasets.__file__)").stdout.split()
    assert all(p.startswith(str(tmp_path / "venv")) for p in where), where
    assert "--methods" in run("tada-demo", "--help").stdout
    assert "study_pretrained" in run("tada-experiments", "--list").stdout

    data_dir, model_dir = str(work / "tfds"), str(work / "run")
    trained = run("tada-train", "--flagfile=tiny.flags", f"--data_dir={data_dir}",
                  f"--model_dir={model_dir}", "--method=baseline", "--steps=2")
    assert "target_test" in trained.stdout
    assert os.path.isfile(os.path.join(model_dir, "run.log"))
    evaluated = run("tada-evaluate", f"--model_dir={model_dir}")
    assert '"target_test"' in evaluated.stdout

    from PIL import Image

    photos = work / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg"):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    predicted = run("tada-predict", f"--model_dir={model_dir}", f"--images={photos}",
                    f"--out={work / 'pred'}")
    assert predicted.stdout.index("a.jpg") < predicted.stdout.index("b.png")  # sorted
    for stem in ("a", "b"):
        assert np.load(work / "pred" / f"{stem}_normals.npy").shape == (48, 64, 3)
        assert (work / "pred" / f"{stem}_side_by_side.png").is_file()
    # Deploy: a LiteRT file (core dependencies only), predicted from like the run.
    run("tada-export", f"--model_dir={model_dir}", "--format=litert",
        f"--out={work / 'model.tflite'}")
    run("tada-predict", f"--model={work / 'model.tflite'}", f"--images={photos}",
        f"--out={work / 'pred_litert'}")
    assert np.load(work / "pred_litert" / "a_normals.npy").shape == (48, 64, 3)

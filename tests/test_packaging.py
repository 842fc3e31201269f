"""The installed package works from outside the repository, next to Hugging Face's
`datasets` (simulated by a package of that name first on sys.path)."""

import os
import subprocess
import sys
import textwrap


def test_import_and_tfds_load_outside_repo_with_a_foreign_datasets_package(tmp_path):
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("HUGGING_FACE = True\n")
    script = textwrap.dedent(f"""
        import datasets
        assert datasets.HUGGING_FACE                       # the foreign package wins 'datasets'
        import tada_keras, tada_datasets                   # ours is 'tada_datasets'
        import tensorflow_datasets as tfds
        ds = tfds.load("sim2real_rooms/tiny", split="target_test",
                       data_dir={str(tmp_path / "tfds")!r})
        n = sum(1 for _ in ds)
        model = tada_keras.build_model(backbone="tiny", decoder_channels=8,
                                       anchor_config={{"num_classes": 4}})
        print("ok", n, tada_keras.__file__.startswith({os.getcwd()!r}))
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ok 3")

"""The environment, versioned: the locks agree with pyproject.toml and with each other, hold nothing
of the machine that wrote them, the installed environment is the lock, each stage depends on exactly
the locked packages that can change what it computes, and drift stops a run unless overridden."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mbmt import environment
from mbmt.errors import MbmtError
from mbmt.environment import Drift, drift, normalize, parse_lock, read_lock, render_stages_file, stage_packages

REPO = Path(__file__).resolve().parents[1]
LOCKS = {name: REPO / "requirements" / f"{name}.txt" for name in environment.LOCK_SETS}
# What the venv holds that no lock lists: the project itself (installed with --no-deps -e .) and the
# installer that `python -m venv` puts there.
NOT_LOCKED = {"mbmt", "pip"}


def pyproject_requirements(install_set: str) -> dict[str, Requirement]:
    """The direct requirements of an install set (base: the dependencies; an extra: them and its own)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + (project["optional-dependencies"][install_set] if install_set != "base" else [])
    return {normalize(Requirement(line).name): Requirement(line) for line in lines}


def direct_pins(text: str) -> dict[str, str]:
    """{name: version} of the lock's entries that uv annotates as required by pyproject.toml itself."""
    direct, current = {}, None
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if pin:
            current = (normalize(pin[1]), pin[2])
        elif current and re.match(r"^\s+#\s+(via\s+)?mbmt \(pyproject\.toml\)", line):
            direct[current[0]] = current[1]
    return direct


def disagreements(install_set: str, lock_text: str) -> list[str]:
    wanted, locked = pyproject_requirements(install_set), direct_pins(lock_text)
    problems = [f"{name}: in pyproject.toml, not in the lock" for name in sorted(set(wanted) - set(locked))]
    problems += [f"{name}: in the lock as a dependency of pyproject.toml, not in it" for name in sorted(set(locked) - set(wanted))]
    problems += [f"{name}: pyproject.toml {wanted[name].specifier}, lock {locked[name]}" for name in sorted(set(wanted) & set(locked))
                 if not wanted[name].specifier.contains(locked[name], prereleases=True)]
    return problems


@pytest.mark.parametrize("install_set", environment.LOCK_SETS)
def test_pyproject_and_the_lock_agree(install_set):
    """Every direct requirement of the install set is locked at its pinned version, and the lock
    has no direct requirement pyproject.toml lacks (regenerate: bash requirements/lock.sh)."""
    assert disagreements(install_set, LOCKS[install_set].read_text()) == []


def test_a_requirement_changed_on_one_side_only_is_a_disagreement():
    text = LOCKS["dev"].read_text()
    assert disagreements("dev", text) == []
    repinned = text.replace("\ntorch==2.14.1 ", "\ntorch==2.14.0 ")
    assert disagreements("dev", repinned) == ["torch: pyproject.toml ==2.14.1, lock 2.14.0"]
    added = text + "ipython==9.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via mbmt (pyproject.toml)\n"
    assert disagreements("dev", added) == ["ipython: in the lock as a dependency of pyproject.toml, not in it"]
    removed = re.sub(r"\npytest-timeout==.*?(?=\n\S)", "", text, flags=re.S)
    assert disagreements("dev", removed) == ["pytest-timeout: in pyproject.toml, not in the lock"]


def test_the_locks_are_one_resolution_for_the_public_index():
    """The extras' locks pin every shared package as dev's does (one resolution), every entry is a
    pin with sha256 hashes, and nothing names a path, an index or a host of the machine that wrote them."""
    dev: dict[str, set[str]] = {}
    for pin in read_lock(LOCKS["dev"]):
        dev.setdefault(pin.name, set()).add(pin.version)
    for name, path in LOCKS.items():
        text = path.read_text()
        assert not re.search(r"file:|/opt/|/work/|/home/|--(extra-)?index-url|--find-links|https?://", text), name
        for pin in read_lock(path):
            assert pin.version in dev.get(pin.name, ()), (name, pin)  # (a marker may differ: why it is needed)
        logical = [line for line in text.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert logical and all(re.search(r"--hash=sha256:[0-9a-f]{64}", line) for line in logical), name
    assert {p.name for p in read_lock(LOCKS["base"])} <= set(dev)


def test_the_installed_environment_is_the_lock():
    """The README's install (requirements/dev.txt with --no-deps, then the project) gives exactly the
    lock: every entry for this platform at its version, nothing else (importlib.metadata)."""
    present = environment.installed()
    locked = {p.name: p.version for p in read_lock(LOCKS["dev"]) if p.applies()}
    extra = sorted(set(present) - set(locked) - NOT_LOCKED)
    assert drift(REPO / "requirements", present) == [], "reinstall: " + environment.REINSTALL
    assert {name: present.get(name) for name in locked} == locked
    assert extra == [], f"installed beside the lock: {extra}"


def test_stages_file_is_generated_from_the_lock():
    """requirements/stages.yaml, which dvc.yaml's stages read, is what `mbmt dag` writes from the lock."""
    assert (REPO / environment.STAGES_FILE).read_text() == render_stages_file(LOCKS["base"])


def lock_with(tmp_path: Path, **versions: str) -> Path:
    text = LOCKS["base"].read_text()
    for name, version in versions.items():
        text, count = re.subn(rf"(?m)^{re.escape(name)}==[^ ;\\]+", f"{name}=={version}", text)
        assert count == 1, name
    path = tmp_path / "base.txt"
    path.write_text(text)
    return path


def changed_stages(tmp_path: Path, **versions: str) -> set[str]:
    before = {stage: stage_packages(stage, LOCKS["base"]) for stage in environment.RESULT_PACKAGES}
    lock = lock_with(tmp_path, **versions)
    return {stage for stage in environment.RESULT_PACKAGES if stage_packages(stage, lock) != before[stage]}


def test_a_lock_change_moves_exactly_the_stages_its_package_affects(tmp_path):
    """Which stages' environment (their dependency in both front ends) a version change moves."""
    assert changed_stages(tmp_path, torchjd="0.18.1") == {"train"}
    assert changed_stages(tmp_path, cvxpy="1.9.4") == {"train"}
    assert changed_stages(tmp_path, torch="2.14.2") == {"weights", "train", "evaluate", "report"}
    assert changed_stages(tmp_path, **{"nvidia-cudnn-cu13": "9.24.1.0"}) == {"weights", "train", "evaluate", "report"}
    assert changed_stages(tmp_path, pillow="13.0.1") == {"fetch", "preprocess", "report"}
    assert changed_stages(tmp_path, numpy="2.4.7") == set(environment.RESULT_PACKAGES) - {"weights"}
    # The front ends, their plugins and the tools around them compute nothing.
    assert changed_stages(tmp_path, dvc="3.67.2", snakemake="9.27.2", tqdm="4.70.2", pyyaml="6.0.5",
                          **{"nvidia-ml-py": "13.615.72", "huggingface-hub": "2.4.1"}) == set()


PRESENT = {"numpy": "2.4.6", "torch": "2.14.1", "ipython": "9.0.0"}
PINS = "numpy==2.4.6 \\\n    --hash=sha256:{h}\ntorch==2.14.1 \\\n    --hash=sha256:{h}\nwinonly==1.0 ; sys_platform == 'nonexistent' \\\n    --hash=sha256:{h}\n"


def fake_locks(tmp_path: Path, dev_extra: str = "") -> Path:
    folder = tmp_path / "requirements"
    folder.mkdir()
    (folder / "base.txt").write_text(PINS.format(h="0" * 64))
    (folder / "dev.txt").write_text(PINS.format(h="0" * 64) + dev_extra.format(h="0" * 64))
    return folder


def test_a_workflow_copy_without_the_lock_is_told_what_to_copy(tmp_path, monkeypatch):
    """A copy of the workflow without requirements/ (as benchmarks/gpu_check.sh once made) stops with
    one error naming the missing lock and the fix, not a FileNotFoundError from deep in a rule file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MbmtError, match=r"requirements/base\.txt is missing: .* copy requirements/ along"):
        stage_packages("train")


def test_drift_names_missing_and_other_versions_not_packages_beside_the_lock(tmp_path):
    folder = fake_locks(tmp_path, dev_extra="dvc-s3==3.3.0 \\\n    --hash=sha256:{h}\n")
    assert drift(folder, PRESENT) == []  # ipython beside the lock; dvc-s3 of an extra not installed; winonly not here
    assert drift(folder, {**PRESENT, "numpy": "2.4.5", "dvc-s3": "3.2.0"}) == [
        Drift("dvc-s3", "3.2.0", "3.3.0"), Drift("numpy", "2.4.5", "2.4.6")]
    assert drift(folder, {"numpy": "2.4.6"}) == [Drift("torch", None, "2.14.1")]


def test_drift_stops_with_each_package_and_the_fix_unless_overridden(tmp_path, monkeypatch):
    folder = fake_locks(tmp_path)
    monkeypatch.setattr(environment, "lock_file", lambda name="base": folder / f"{name}.txt")
    monkeypatch.setattr(environment, "installed", lambda: {"numpy": "2.4.5"})
    with pytest.raises(MbmtError) as error:
        environment.check({})
    message = str(error.value)
    assert f"the installed environment differs from the lock {folder / 'base.txt'}: " in message
    assert "numpy 2.4.5 (locked 2.4.6); torch missing (locked 2.14.1)" in message
    assert environment.REINSTALL in message and "MBMT_ENV_DRIFT=allow" in message
    environment.check({"MBMT_ENV_DRIFT": "allow"})  # goes on
    monkeypatch.setenv("MBMT_ENV_DRIFT", "allow")
    record = environment.record()
    assert record["matches_lock"] is False and record["override"] is True
    assert record["drift"] == ["numpy 2.4.5 (locked 2.4.6)", "torch missing (locked 2.14.1)"]
    assert record["lock"] == "requirements/base.txt" and len(record["lock_sha256"]) == 64
    line = environment.describe([record])
    assert line.startswith(f"lock requirements/base.txt sha256 {record['lock_sha256'][:12]}; drifted from the lock")
    assert "numpy 2.4.5 (locked 2.4.6)" in line
    # The run identity: the drift of a package the stage's result depends on enters it.
    assert environment.identity("train")["drift"] == ["numpy 2.4.5 (locked 2.4.6)", "torch missing (locked 2.14.1)"]


def test_this_environment_is_recorded_as_matching_the_lock():
    record = environment.record()
    assert record["matches_lock"] is True and record["drift"] == [], record["drift"]
    assert environment.describe([record, record]).endswith("; matched the lock")


def test_the_parser_reads_markers_and_continuations():
    pins = parse_lock("# header\nscipy==1.17.1 ; python_full_version < '3.12' \\\n    --hash=sha256:ab\n"
                      "    # via\n    #   cvxpy\nPillow==13.0.0 \\\n    --hash=sha256:cd\n")
    assert [(p.name, p.version, p.marker) for p in pins] == [
        ("scipy", "1.17.1", "python_full_version < '3.12'"), ("pillow", "13.0.0", "")]
    assert pins[0].applies() == (sys.version_info < (3, 12))


RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def test_rule_files_are_as_snakefmt_formats_them():
    import subprocess

    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *map(str, RULE_FILES)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


@pytest.mark.slow  # one Snakemake process that loads the workflow (~20 s on 2 cores)
def test_lint_asks_only_the_answered_software_question():
    """`snakemake --lint` asks only, per rule, which software it runs in, and each rule answers it
    where the lint points (the lines above its definition): the one locked environment."""
    import os
    import subprocess

    lint = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--lint"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    output = lint.stdout + lint.stderr
    titles = set(re.findall(r"(?m)^    \* (.+?):$", output))
    assert titles == {"Specify a conda environment or container for each rule."}, output[-3000:]
    assert "Lints for snakefile" not in output
    linted = re.findall(r"(?m)^Lints for rule (\w+) \(line (\d+), (.+?)\):$", output)
    assert {name for name, _, _ in linted} == {"fetch", "weights", "preprocess", "train", "train_from_st", "evaluate", "report"}
    for name, _, path in linted:  # (Snakemake's line of a `use rule` is off: found by the rule's name)
        answered = re.search(rf"(?m)^# Software: the one locked environment every rule runs in .*\n#.*\n"
                             rf"(rule {name}:|use rule \w+ as {name} with:)$", Path(path).read_text())
        assert answered, f"{path}: rule {name} does not answer the lint"


def test_the_run_identity_moves_with_the_trainings_packages_only(tmp_path, monkeypatch):
    """A training's run identity (mbmt.training.checkpoint.run_settings) holds environment.identity:
    a lock that moves torchjd starts a fresh run, one that moves dvc republishes the finished one."""
    folder = tmp_path / "requirements"
    folder.mkdir()
    monkeypatch.setattr(environment, "lock_file", lambda name="base": folder / f"{name}.txt")
    monkeypatch.setattr(environment, "installed",
                        lambda: {p.name: p.version for p in read_lock(LOCKS["base"]) if p.applies()})

    def identity(**versions: str) -> dict:
        (folder / "base.txt").write_text(lock_with(tmp_path, **versions).read_text())
        return environment.identity("train")

    same = identity()
    assert same["drift"] == [] and len(same["locked"]) == 64
    assert identity(dvc="3.67.2")["locked"] == same["locked"]
    assert identity(torchjd="0.18.1")["locked"] != same["locked"]

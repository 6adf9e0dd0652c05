"""The documentation stays true: the generated configuration page matches the settings, every variable it names
really sets its setting, and every link, make target, path and module the README and docs/ name exists.

Why: docs that drift are worse than none. These checks are cheap (no Prefect, no network) and fail with the fix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as PydanticSettingsError

from ticketlens import docgen

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SENTINEL = "https://docs-check.example/sentinel"

# Link targets another change adds; a link to one of them may dangle until that change lands (then it is checked
# like any other).
PENDING_TARGETS: dict[str, str] = {}


# ------------------------------------------------------------------------------------ configuration page


def test_configuration_page_is_current():
    page = ROOT / "docs" / "configuration.md"
    assert page.exists(), "docs/configuration.md is missing: run make docs"
    assert page.read_text(encoding="utf-8") == docgen.render(), (
        "docs/configuration.md is stale (the settings changed): run make docs and commit the result")


def _env_value(row: docgen.SettingDoc) -> str:
    if row.json_key is None:
        return SENTINEL
    value: object = SENTINEL
    for key in reversed(row.json_key.split(".")):
        value = {key: value}
    return json.dumps(value)


def _assert_variable_sets_field(model: type[BaseSettings], row: docgen.SettingDoc, monkeypatch) -> None:
    """Set the documented variable to a sentinel: the field must take it, or refuse it naming that field."""
    monkeypatch.setenv(row.env, _env_value(row))
    try:
        built = model(_env_file=None)
    except ValidationError as exc:
        locs = [tuple(str(p) for p in err["loc"]) for err in exc.errors()]
        assert any(row.path[-1] in loc for loc in locs), (
            f"{row.env} raised a validation error for other fields ({locs}): the documented name is wrong")
        return
    except (PydanticSettingsError, ValueError) as exc:  # a value that is not JSON for a JSON field
        assert row.env in str(exc) or row.path[-1] in str(exc), (
            f"{row.env} raised an error that names neither it nor its field: {exc}")
        return
    value = built
    for part in row.path:
        value = getattr(value, part)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    assert value == SENTINEL, (
        f"{row.env} is documented for {'.'.join(row.path)} but setting it left the value at {value!r}")


def _clean_env(monkeypatch, tmp_path, prefixes: tuple[str, ...]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file of the checkout
    for name in list(os.environ):
        if name.upper().startswith(prefixes):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("row", list(docgen.build_sections(*docgen.project_settings()).walk_rows()),
                         ids=lambda r: r.env)
def test_every_documented_variable_sets_its_setting(row, monkeypatch, tmp_path):
    _clean_env(monkeypatch, tmp_path, ("TICKETLENS_",))
    _assert_variable_sets_field(docgen.project_settings()[0], row, monkeypatch)


# Nested sub-models, the way settings can be grouped: a plain BaseModel reached through the parent's nested
# delimiter, a BaseSettings with its own prefix, and a plain BaseModel without a delimiter (one JSON variable).


class _Spike(BaseModel):
    """Spike detection."""

    fdr: float = Field(0.002, gt=0, lt=1, description="False-discovery rate per hour.")
    min_count: int = Field(5, ge=1, description="Fewer tickets never page.")


class _Csat(BaseSettings):
    """CSAT drivers."""

    model_config = SettingsConfigDict(env_prefix="TLDOC_CSAT_")
    window_days: int = Field(90, gt=0, description="Days analysed.")
    fdr_method: str = Field("by", description="by or bh.")


class _Nested(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TLDOC_", env_nested_delimiter="__")
    url: str = Field("sqlite:///x.db", description="Warehouse.")
    token: SecretStr | None = Field(None, description="A secret.")
    spike: _Spike = Field(default_factory=_Spike, description="Spike detection settings.")
    csat: _Csat = Field(default_factory=_Csat)


class _NoDelimiter(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TLDOC_")
    spike: _Spike = Field(default_factory=_Spike)


def test_nested_sub_models_get_their_real_variable_names(monkeypatch, tmp_path):
    rows = {row.path: row for row in docgen.build_sections(_Nested).walk_rows()}
    assert {path: (row.env, row.json_key) for path, row in rows.items()} == {
        ("url",): ("TLDOC_URL", None),
        ("token",): ("TLDOC_TOKEN", None),
        ("spike", "fdr"): ("TLDOC_SPIKE__FDR", None),
        ("spike", "min_count"): ("TLDOC_SPIKE__MIN_COUNT", None),
        ("csat", "window_days"): ("TLDOC_CSAT_WINDOW_DAYS", None),
        ("csat", "fdr_method"): ("TLDOC_CSAT_FDR_METHOD", None),
    }
    json_rows = list(docgen.build_sections(_NoDelimiter).walk_rows())
    assert [(r.env, r.json_key) for r in json_rows] == [("TLDOC_SPIKE", "fdr"), ("TLDOC_SPIKE", "min_count")]
    for model, row in [*((_Nested, r) for r in rows.values()), *((_NoDelimiter, r) for r in json_rows)]:
        with monkeypatch.context() as patch:
            _clean_env(patch, tmp_path, ("TLDOC_",))
            _assert_variable_sets_field(model, row, patch)

    page = docgen.render(_Nested)
    assert "| `TLDOC_SPIKE__FDR` | float (> 0, < 1) | `0.002` | False-discovery rate per hour. |" in page
    assert "## `spike` (_Spike)" in page and "Spike detection settings." in page
    assert "## `csat` (_Csat)" in page and "CSAT drivers." in page
    assert "| `TLDOC_TOKEN` | secret, optional | unset | A secret. |" in page
    assert "one JSON object in `TLDOC_SPIKE`" in docgen.render(_NoDelimiter)


def test_the_settings_module_can_name_its_variables(monkeypatch, tmp_path):
    """A naming function (the settings module's ``env_name``) wins over the walk's rules."""

    def env_name(*path: str) -> str:
        return "TLDOC_" + "_".join(path).upper()

    rows = list(docgen.build_sections(_NoDelimiter, env_name).walk_rows())
    assert [(r.env, r.json_key) for r in rows] == [("TLDOC_SPIKE_FDR", None), ("TLDOC_SPIKE_MIN_COUNT", None)]
    assert "| `TLDOC_SPIKE_FDR` |" in docgen.render(_NoDelimiter, env_name)


def test_a_setting_without_description_is_listed():
    class _Bare(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="TLDOC_")
        timeout_seconds: float = 30.0

    assert docgen.undocumented(_Bare) == ["TLDOC_TIMEOUT_SECONDS"]
    assert "| `TLDOC_TIMEOUT_SECONDS` | float | `30.0` | — |" in docgen.render(_Bare)


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    page = tmp_path / "configuration.md"
    page.write_text("old\n", encoding="utf-8")
    assert docgen.main(["--output", str(page), "--check"]) == 1
    assert "run make docs" in capsys.readouterr().err
    assert docgen.main(["--output", str(page)]) == 0
    assert docgen.main(["--output", str(page), "--check"]) == 0


# ------------------------------------------------------------------------------------------ README and docs

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _code(text: str) -> list[str]:
    """Inline code spans and fenced code lines: where commands and paths are written."""
    fenced = [line for block in _FENCE.findall(text) for line in block.splitlines()[1:-1]]
    return _CODE_SPAN.findall(_FENCE.sub("", text)) + fenced


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_~]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            slug = _slug(match.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_to_existing_files(page):
    text = _prose(page.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text) + _REF_LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        rel = str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else str(dest)
        if not dest.exists():
            if rel not in PENDING_TARGETS:
                broken.append(f"{target} (no file {rel})")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {rel})")
    assert not broken, f"{_rel(page)} has broken links: " + "; ".join(broken)


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9_-]*)\s*:(?!=)", text, re.M))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_make_targets_named_exist(page):
    targets = _make_targets()
    named = {m for code in _code(page.read_text(encoding="utf-8"))
             for m in re.findall(r"(?:^|[\s;&(])make\s+(?:-\S+\s+)*([a-z][a-z0-9_-]*)\b(?!=)", code)}
    missing = sorted(named - targets)
    assert not missing, f"{_rel(page)} names make targets the Makefile does not have: {missing}"


_REPO_DIRS = ("flows", "tasks", "models", "adapters", "helpdesk_sim", "bench", "ops", "tests", "docs", "ticketlens",
              "services", ".ci")
_REPO_FILES = {"prefect.yaml", "Makefile", "pyproject.toml", ".env.example", "alembic.ini", "uv.lock", "README.md"}


def _named_paths(code: str) -> list[str]:
    out = []
    for token in re.split(r"[\s\"'(),;=:]+", code):
        token = token.rstrip(".")
        if any(ch in token for ch in "<>*{}…$"):
            continue
        if token in _REPO_FILES or (token.split("/")[0] in _REPO_DIRS and "/" in token):
            out.append(token.split("::")[0])
    return out


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] == "ticketlens" and len(parts) > 1 and not (ROOT / "ticketlens" / f"{parts[1]}.py").exists():
        parts = parts[1:]
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py", base / "__main__.py"):
        if candidate.exists():
            return candidate
    return None


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_paths_modules_and_tests_named_exist(page):
    text = page.read_text(encoding="utf-8")
    problems = []
    test_files = {p.name for p in (ROOT / "tests").rglob("*.py")}
    for code in _code(text):
        for path in _named_paths(code):
            if path.startswith("docs/") and path in PENDING_TARGETS:
                continue
            if not (ROOT / path).exists():
                problems.append(f"path {path}")
        for module in re.findall(r"python\d?\s+-m\s+((?:ticketlens|bench)(?:\.\w+)+)", code):
            if _module_file(module) is None:
                problems.append(f"module {module}")
        for name in re.findall(r"\b(test_\w+\.py)\b", code):
            if name not in test_files:
                problems.append(f"test file {name}")
    assert not problems, f"{_rel(page)} names things that do not exist: " + "; ".join(sorted(set(problems)))


def test_every_deployment_has_a_flow_page_with_its_schedule():
    """One page per deployment in prefect.yaml, naming its cron (or saying it has none); the README too."""
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = []
    for deployment in deployments:
        page = ROOT / "docs" / "flows" / f"{deployment['name']}.md"
        if not page.exists():
            problems.append(f"no page docs/flows/{deployment['name']}.md")
            continue
        text = page.read_text(encoding="utf-8")
        crons = [s["cron"] for s in deployment.get("schedules") or [] if "cron" in s]
        for cron in crons:
            if f"`{cron}`" not in text:
                problems.append(f"{page.name} does not name its schedule `{cron}`")
            if cron not in readme:
                problems.append(f"README.md does not name the schedule {cron} of {deployment['name']}")
        if not crons and not re.search(r"unscheduled|no schedule", text, re.I):
            problems.append(f"{page.name} does not say that {deployment['name']} has no schedule")
    assert not problems, "; ".join(problems)

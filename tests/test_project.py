"""The project file: environments parsed with located errors, all reported at once, no secret values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import environments, offline, project
from reconciler.project import ProjectError

GOOD = """\
manifests: base
environments:
  dev:
    connection: {url_env: DEV_URL, api_key_env: DEV_ES_API_KEY}
    es_version: 8.19
  prod:
    connection:
      cloud_id_env: PROD_CLOUD_ID
      api_key_env: PROD_ES_API_KEY
    state: file:states/prod.json
    workspace: production
    es_version: "9.5"
    overlay: overlays/prod
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "overlays" / "prod").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "reconciler.yaml"
    path.write_text(text)
    return path


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ProjectError) as raised:
        project.load(write(tmp_path, text))
    return [str(e) for e in raised.value.errors]


def test_a_project_names_its_environments_with_defaults_and_paths_beside_the_file(tmp_path: Path) -> None:
    loaded = project.load(write(tmp_path, GOOD))
    assert list(loaded.environments) == ["dev", "prod"]
    dev, prod = loaded.environment("dev"), loaded.environment("prod")
    assert (dev.workspace, dev.state, dev.overlay, dev.es_version) == ("dev", "cluster", None, "8.19")
    assert (dev.url_env, dev.api_key_env, dev.cloud_id_env) == ("DEV_URL", "DEV_ES_API_KEY", None)
    assert prod.workspace == "production"
    assert prod.state == f"file:{tmp_path / 'states/prod.json'}"
    assert prod.overlay == tmp_path / "overlays/prod"
    assert dev.base == prod.base == tmp_path / "base"
    assert prod.source == f"{tmp_path / 'reconciler.yaml'}:6"


def test_an_unknown_environment_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--env qa: .* no such environment \(known: dev, prod\)"):
        project.load(write(tmp_path, GOOD)).environment("qa")


def test_every_problem_is_reported_at_once_each_with_file_line_and_field(tmp_path: Path) -> None:
    text = """\
environments:
  dev:
    connection: {url_env: DEV_URL, colour: blue}
    es_version: "7.17"
    overlay: missing/dev
  prod:
    connection: {url_env: PROD_URL, cloud_id_env: PROD_CLOUD_ID}
    state: s3://bucket
    workspace: "a b"
  Bad_Name:
    connection: {url_env: X_URL}
"""
    found = errors(tmp_path, text)
    file = tmp_path / "reconciler.yaml"
    assert (
        f"{file}:3: environments.dev.connection.colour: unknown key (known: url_env, cloud_id_env, api_key_env)"
        in found
    )
    assert any(
        e.startswith(f"{file}:4: environments.dev.es_version: the tool knows Elasticsearch") for e in found
    )
    assert f"{file}:8: environments.prod.state: give cluster or file:PATH" in found
    assert f"{file}:9: environments.prod.workspace: use only letters, digits, '_', '.' and '-'" in found
    assert len(found) == 4  # the others are checked once the format is right


def test_semantic_problems_are_located_and_reported_together(tmp_path: Path) -> None:
    text = """\
environments:
  dev:
    connection: {url_env: DEV_URL}
    overlay: missing/dev
  prod:
    connection: {url_env: PROD_URL, cloud_id_env: PROD_CLOUD_ID}
  Bad_Name:
    connection: {url_env: X_URL}
  nowhere:
    connection: {api_key_env: ES_API_KEY}
"""
    found = errors(tmp_path, text)
    file = tmp_path / "reconciler.yaml"
    assert (
        f"{file}:4: environments.dev.overlay: the folder {tmp_path / 'missing/dev'} does not exist" in found
    )
    assert f"{file}:6: environments.prod.connection: give url_env or cloud_id_env, not both" in found
    assert any(e.startswith(f"{file}:7: environments.Bad_Name: an environment name holds") for e in found)
    assert f"{file}:10: environments.nowhere.connection: give url_env or cloud_id_env" in found
    assert len(found) == 4


@pytest.mark.parametrize(
    "value",
    ["essu_dGhpcy1pcy1hLWNhbmFyeS1rZXk=", "https://elastic:canary@prod.example:9243", "canary-secret-value"],
)
def test_a_value_where_a_variable_name_belongs_is_refused_and_never_shown(tmp_path: Path, value: str) -> None:
    text = f"environments:\n  prod:\n    connection:\n      url_env: PROD_URL\n      api_key_env: '{value}'\n"
    found = errors(tmp_path, text)
    assert found == [
        f"{tmp_path / 'reconciler.yaml'}:5: environments.prod.connection.api_key_env: must be the name of "
        "an environment variable (upper-case letters, digits and '_', such as PROD_ES_API_KEY), never its value"
    ]
    assert value not in "\n".join(found)


def test_yaml_errors_and_a_missing_file_are_located(tmp_path: Path) -> None:
    assert errors(tmp_path, "environments: {dev: [\n")[0].startswith(
        f"{tmp_path / 'reconciler.yaml'}:2: YAML"
    )
    assert errors(tmp_path, "environments: {}\n") == [
        f"{tmp_path / 'reconciler.yaml'}:1: environments: name at least one environment"
    ]
    with pytest.raises(ProjectError, match="the project file does not exist"):
        project.load(tmp_path / "nothing.yaml")


def test_the_version_checked_against_get_root() -> None:
    environment = project.Environment("prod", "U", None, None, "cluster", "prod", "9.1", Path(), None, "f:3")
    assert environment.version_problem("9.1.4") is None
    problem = environment.version_problem("9.5.0")
    assert problem == "environment prod expects Elasticsearch 9.1 (f:3) but the cluster reports 9.5.0"
    exact = project.Environment("prod", "U", None, None, "cluster", "prod", "9.1.3", Path(), None, "f:3")
    assert exact.version_problem("9.1.3") is None
    assert exact.version_problem("9.1.4") is not None


def test_the_connection_is_read_from_the_variables_named() -> None:
    environment = project.Environment(
        "dev", "DEV_URL", None, "DEV_KEY", "cluster", "dev", None, Path(), None, "f:2"
    )
    env = {"DEV_URL": "http://dev:9200", "DEV_KEY": "k"}
    assert environment.connection_values(env) == {"url": "http://dev:9200", "api_key": "k"}
    with pytest.raises(ValueError, match=r"--env dev: the variable DEV_KEY \(f:2\) is not set"):
        environment.connection_values({"DEV_URL": "http://dev:9200"})


def test_the_schema_describes_every_key() -> None:
    schema = json.dumps(project.json_schema())
    for key in ("url_env", "cloud_id_env", "api_key_env", "workspace", "es_version", "overlay", "manifests"):
        assert key in schema


def test_the_committed_schema_is_the_one_schema_prints() -> None:
    committed = json.loads((Path(__file__).resolve().parents[1] / "project.schema.json").read_text())
    assert committed == project.json_schema(), (
        "regenerate it: reconciler schema --project > project.schema.json"
    )


def test_the_example_project_is_valid_and_each_environment_validates_on_its_version() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "environments"
    loaded = project.load(example / "reconciler.yaml")
    assert list(loaded.environments) == ["dev", "staging", "prod"]
    assert {e.es_version for e in loaded.environments.values()} == {"8.19", "9.1", "9.5"}
    for environment in loaded.environments.values():  # each one's manifests, overlay applied, on its version
        assert environment.es_version is not None
        report = offline.validate(
            environments.manifests_of(environment), environment.es_version, {}, offline=True
        )
        assert report.exit_code == 0, (environment.name, report.validation.errors)
        assert report.validation.endpoints, environment.name


@pytest.mark.parametrize(
    ("key", "variable", "suffixes"),
    [
        ("url_env", "ANTHROPIC_API_KEY", "_URL or _URLS or _ENDPOINTS"),
        ("api_key_env", "OPENAI_TOKEN", "_API_KEY"),
        ("cloud_id_env", "PROD_ES_URL", "_CLOUD_ID"),
    ],
)
def test_a_variable_must_say_by_its_name_what_it_holds(
    tmp_path: Path, key: str, variable: str, suffixes: str
) -> None:
    """A pull request that points url_env at a provider key would print the key in an error."""
    other = "url_env: X_URL" if key != "url_env" else "cloud_id_env: X_CLOUD_ID"
    if key == "cloud_id_env":
        other = "api_key_env: X_API_KEY"
    text = f"environments:\n  dev:\n    connection:\n      {key}: {variable}\n      {other}\n"
    found = errors(tmp_path, text)
    assert found == [
        f"{tmp_path / 'reconciler.yaml'}:4: environments.dev.connection.{key}: must name a variable ending in "
        f"{suffixes}, such as PROD_ES{suffixes.split(maxsplit=1)[0]}"
    ]


def test_a_url_variable_that_holds_no_url_is_refused_without_showing_it() -> None:
    environment = project.Environment(
        "dev", "DEV_URL", None, None, "cluster", "dev", None, Path(), None, "f:2"
    )
    with pytest.raises(
        ValueError, match=r"^--env dev: the variable DEV_URL \(f:2\) does not hold http\(s\) URLs$"
    ):
        environment.connection_values({"DEV_URL": "canary-not-a-url"})
    with pytest.raises(ValueError, match="does not hold http"):
        environment.connection_values({"DEV_URL": "http://ok:9200,ftp://canary"})
    assert environment.connection_values({"DEV_URL": "http://a:9200, https://b"}) == {
        "url": "http://a:9200, https://b"
    }

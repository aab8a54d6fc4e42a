"""The command line: parses options and wires the modules together (the only module that does)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler import __version__

app = typer.Typer(
    name="reconciler",
    help="Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the tool's version."),
    ] = False,
) -> None:
    """Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests."""


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 9200,
    es_version: Annotated[
        str, typer.Option("--version", help="Elasticsearch version to emulate: 8.19.x or 9.0.x to 9.5.x.")
    ] = "9.5.0",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every request, in milliseconds.")] = 0.0,
    fault_rate: Annotated[
        float, typer.Option(help="Share of requests answered 429 or 503 without being applied (0 to 1).")
    ] = 0.0,
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault injection, for repeatable runs.")] = 0,
    lost_response_rate: Annotated[
        float, typer.Option(help="Share of writes applied whose response is then lost (0 to 1).")
    ] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Seconds sent in Retry-After with injected 429s.")] = 1.0,
    deploy_seconds: Annotated[
        float, typer.Option(help="Seconds a trained-model deployment takes to reach its target allocations.")
    ] = 5.0,
    ml_capacity: Annotated[
        int | None,
        typer.Option(
            help="Processors on the ML node (an allocation uses num_threads); more allocations stay pending."
        ),
    ] = None,
    ml_autoscaling: Annotated[
        bool,
        typer.Option(
            help="Pending allocations wait for capacity (as on Elastic Cloud); without it a start that "
            "cannot be placed fails at once with 429."
        ),
    ] = True,
    max_put_wait: Annotated[
        float,
        typer.Option(help="Seconds a PUT of an in-cluster endpoint waits at most before answering 408."),
    ] = 30.0,
    fail_model: Annotated[
        list[str] | None, typer.Option(help="Deployments of this model fail (repeatable).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Require `Authorization: ApiKey <this>`; without it no auth is needed.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Persist the cluster here across restarts (default: in memory).")
    ] = None,
    eis: Annotated[
        bool, typer.Option(help="Also list the preconfigured EIS (`elastic` service) endpoints.")
    ] = False,
    trained_model: Annotated[
        list[str] | None,
        typer.Option(
            help="A model uploaded with eland, as MODEL_ID[:TASK_TYPE] (default text_embedding; repeatable)."
        ),
    ] = None,
) -> None:
    """Serve an emulated Elasticsearch cluster (the inference, trained-model, ingest and document APIs)."""
    from reconciler.emulator import EmulatorConfig, serve

    config = EmulatorConfig(
        version=es_version,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        lost_response_rate=lost_response_rate,
        retry_after=retry_after,
        deploy_seconds=deploy_seconds,
        ml_capacity=ml_capacity,
        ml_autoscaling=ml_autoscaling,
        max_put_wait=max_put_wait,
        fail_models=tuple(fail_model or ()),
        api_key=api_key,
        data_dir=data_dir,
        eis=eis,
        trained_models=tuple(
            (model, task or "text_embedding")
            for model, _, task in (spec.partition(":") for spec in trained_model or ())
        ),
    )
    try:
        config.parsed_version()
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--version") from None
    serve(config, host, port)


ManifestsOption = Annotated[
    Path,
    typer.Option(
        "--manifests", envvar="RECONCILER_MANIFESTS", help="The folder of manifests, read recursively."
    ),
]
VersionOption = Annotated[
    str,
    typer.Option(
        "--es-version",
        help="The Elasticsearch version to validate for (8.19 or 9.0 to 9.5; default the newest).",
    ),
]


@app.command()
def validate(manifests: ManifestsOption = Path("manifests"), es_version: VersionOption = "9.5") -> None:
    """Check the manifests offline, reporting every error as file:line: field.path: message."""
    import os

    from reconciler.catalog import Version, supported
    from reconciler.manifests import load

    try:
        version = Version.parse(es_version)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--es-version") from None
    if not supported(version):
        raise typer.BadParameter(
            "the tool knows Elasticsearch 8.19 and 9.0 to 9.5", param_hint="--es-version"
        )
    result = load(manifests, version, os.environ)
    for warning in result.warnings:
        typer.echo(f"{warning.file}:{warning.line}: {warning.path}: warning: {warning.message}", err=True)
    for problem in result.errors:
        typer.echo(str(problem))
    line = f"{version.major}.{version.minor}"
    if result.errors:
        typer.echo(
            f"{len(result.errors)} error(s) in {result.files} file(s) (Elasticsearch {line}).", err=True
        )
        raise typer.Exit(1)
    typer.echo(
        f"{len(result.endpoints)} endpoint(s) in {result.files} file(s) are valid for Elasticsearch {line}."
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the manifest format, for editors (yaml-language-server)."""
    import json

    from reconciler.model import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def main() -> None:
    app()

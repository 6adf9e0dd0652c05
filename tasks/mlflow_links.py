"""What ML owners see in MLflow, and the links between MLflow and Prefect.

An ML owner opening the MLflow UI should find each nightly run under the date it trained for (not dozens of
runs called "nightly-retrain"), jump from it to the Prefect flow run that produced it (and back: the Prefect
decision artifact links to the MLflow run and the registered version), and read in the registry what the model
is and why each version was or was not promoted. The training code (``tasks.training``) logs the run; this
step names, tags and describes it afterwards, so it works the same whichever training code produced the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from prefect import task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.settings import Settings
from ticketlens.models.evaluation import PromotionDecision

# MLflow 3.17's UI has a global GenAI / Model-training switch, remembered per browser and GenAI by default; the
# experiment tag (adapters.tracking.EXPERIMENT_KIND) is not enough for a browser that never switched. Links carry it.
ML_VIEW = "?workflowType=machine_learning"

MODEL_DESCRIPTION = (
    "Ticket-category classifier (TF-IDF word + character n-grams, linear model) over the TicketLens taxonomy. "
    "Retrained every night by the Prefect deployment `nightly-retrain` on agent-confirmed categories; a new "
    "version becomes alias `challenger`, and `champion` (what hourly scoring loads as "
    "`models:/<name>@champion`) only when it beats the current champion on the same holdout. Each version's "
    "description says how it was trained and why it was or was not promoted."
)


@dataclass(frozen=True)
class TrainingLinks:
    """Where the run and the version can be opened (None where the tracking store has no web UI)."""

    mlflow_run_url: str | None
    model_version_url: str | None
    prefect_run_url: str | None
    run_name: str

    def markdown(self, run_id: str, model_name: str, version: str) -> str:
        run = f"[{self.run_name}]({self.mlflow_run_url})" if self.mlflow_run_url else f"`{run_id}`"
        model = f"[{model_name} v{version}]({self.model_version_url})" if self.model_version_url else \
            f"`{model_name}` v{version}"
        lines = ["", "**Links**", "", f"- MLflow run: {run}", f"- registered version: {model}"]
        if self.prefect_run_url:
            lines.append(f"- this Prefect run: {self.prefect_run_url}")
        return "\n".join(lines)


def mlflow_ui_base(settings: Settings) -> str | None:
    """The MLflow web UI: the tracking server itself when it is one (http/https); a sqlite:/// store has none."""
    parts = urlsplit(settings.mlflow_tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")  # never credentials in a link
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def prefect_run() -> tuple[str | None, str | None, str | None]:
    """(flow run id, its Prefect UI URL, its name) of the current run; Nones outside a run."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_UI_URL

    # The UI's route is /runs/flow-run/<id> (what the engine logs); runtime's ui_url uses an older form.
    ui = PREFECT_UI_URL.value()
    url = f"{ui.rstrip('/')}/runs/flow-run/{flow_run.id}" if ui and flow_run.id else None
    return flow_run.id, url, flow_run.name


@task(name="link-training-run", cache_policy=NO_CACHE)
def link_training_run(settings: Settings, run_id: str, version: str, decision: PromotionDecision,
                      window_label: str) -> TrainingLinks:
    """Name the MLflow run by its date, tag it with the Prefect run, describe the registered model and version."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    flow_run_id, flow_run_url, flow_run_name = prefect_run()
    run_name = flow_run_name if flow_run_name and flow_run_name.startswith("retrain ") else f"retrain {window_label}"
    client.update_run(run_id, name=run_name)
    tags = {"prefect.flow_run_id": flow_run_id, "prefect.flow_run_url": flow_run_url,
            "prefect.flow_run_name": flow_run_name, "promotion.decision": "promoted" if decision.promote else
            "not promoted", "promotion.reason": decision.reason}
    for key, value in tags.items():
        if value:
            client.set_tag(run_id, key, str(value)[:5000])
    note = [f"Nightly retrain for {window_label}: registered `{settings.model_name}` v{version}, "
            f"{'promoted to champion' if decision.promote else 'not promoted'} ({decision.reason})."]
    if flow_run_url:
        note.append(f"Prefect flow run: [{flow_run_name or flow_run_id}]({flow_run_url})")
    client.set_tag(run_id, "mlflow.note.content", "\n\n".join(note))  # the run page's Description

    client.update_registered_model(settings.model_name, description=MODEL_DESCRIPTION)
    version_text = (f"Trained by nightly-retrain for {window_label} (MLflow run {run_name}, `{run_id}`"
                    + (f"; Prefect run {flow_run_url}" if flow_run_url else "") + "). "
                    f"Holdout {decision.metric} {decision.challenger_score:.4f}"
                    + (f" vs champion {decision.champion_score:.4f}" if decision.champion_score is not None else "")
                    + f". {'Promoted to champion' if decision.promote else 'Not promoted'}: {decision.reason}.")
    client.update_model_version(settings.model_name, version, description=version_text)

    base = mlflow_ui_base(settings)
    experiment_id = client.get_run(run_id).info.experiment_id
    return TrainingLinks(
        mlflow_run_url=f"{base}/#/experiments/{experiment_id}/runs/{run_id}{ML_VIEW}" if base else None,
        model_version_url=f"{base}/#/models/{quote(settings.model_name)}/versions/{version}{ML_VIEW}" if base
        else None,
        prefect_run_url=flow_run_url, run_name=run_name,
    )

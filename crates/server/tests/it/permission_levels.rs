//! Object permission levels: every mounted route that acts on one experiment (its runs, logged
//! models and artifacts take its permissions), registered model (and its versions), job (and
//! its runs) or serving endpoint is called by one user per level of that object's ladder and
//! one with no grant. A user whose level includes what the route needs is answered; any other
//! is refused with PERMISSION_DENIED and the object is left as it was. The levels each route
//! needs are Databricks' documented abilities (where Databricks says nothing, MLflow's auth
//! plugin's), written here from the documentation, not from tarn's checks. Every mounted route
//! under the object-scoped prefixes is in `REQUIRED` or, with the reason, in
//! `NOT_OBJECT_SCOPED`: a route added without an entry fails here.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::serving_api::{one_row, register};
use crate::{TestApp, app};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Experiment,
    Model,
    Job,
    Endpoint,
}

impl Kind {
    /// The levels Databricks documents for the object, with their rank: a level includes every
    /// ability of a lower rank. A job's owner and its managers may do the same things (the
    /// owner is also who the job runs as).
    fn ladder(self) -> &'static [(&'static str, u8)] {
        match self {
            Kind::Experiment => &[("CAN_READ", 1), ("CAN_EDIT", 2), ("CAN_MANAGE", 3)],
            Kind::Model => &[
                ("CAN_READ", 1),
                ("CAN_EDIT", 2),
                ("CAN_MANAGE_STAGING_VERSIONS", 3),
                ("CAN_MANAGE_PRODUCTION_VERSIONS", 4),
                ("CAN_MANAGE", 5),
            ],
            Kind::Job => &[
                ("CAN_VIEW", 1),
                ("CAN_MANAGE_RUN", 2),
                ("CAN_MANAGE", 3),
                ("IS_OWNER", 3),
            ],
            Kind::Endpoint => &[("CAN_VIEW", 1), ("CAN_QUERY", 2), ("CAN_MANAGE", 3)],
        }
    }

    /// 0 for no grant.
    fn rank(self, level: Option<&str>) -> u8 {
        let Some(level) = level else { return 0 };
        self.ladder()
            .iter()
            .find(|(name, _)| *name == level)
            .map(|(_, rank)| *rank)
            .unwrap_or_else(|| panic!("{level} is no level of {self:?}"))
    }

    /// The object type's segment in `/api/2.0/permissions/{object_type}/{object_id}`.
    fn permissions_segment(self) -> &'static str {
        match self {
            Kind::Experiment => "experiments",
            Kind::Model => "registered-models",
            Kind::Job => "jobs",
            Kind::Endpoint => "serving-endpoints",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Experiment => "plx",
            Kind::Model => "plm",
            Kind::Job => "plj",
            Kind::Endpoint => "ple",
        }
    }
}

/// What one test made for one check, as the admin: the object and what the routes name.
#[derive(Debug, Default, Clone)]
struct Made {
    experiment: String,
    experiment_name: String,
    /// Deleted, for restore.
    deleted_experiment: String,
    /// Active, with a tag `t`, a param `p`, a metric `m` and the artifact `file.txt`.
    run: String,
    /// Deleted, for restore.
    deleted_run: String,
    /// With the tag `lt`.
    logged_model: String,

    /// With the tag `t`; version 1 in None (tag `vt`, alias `champion`, the admin's open
    /// requests to Staging and to Production and the admin's comment), version 2 in
    /// Production (the admin's open request to Staging) and version 3 in Staging.
    model: String,
    model_id: String,
    /// Version 1's registry copy (`_registry/...`).
    copy: String,
    /// A run readable by every user, holding a model directory.
    source_run: String,
    comment: String,
    /// A webhook of the model's.
    webhook: String,
    webhook_url: String,

    /// With one task `t`.
    job: String,
    job_name: String,
    /// Not started (no runner runs here).
    active_run: String,
    /// Cancelled and ended.
    ended_run: String,

    endpoint: String,
    endpoint_id: String,
    /// The registered model the endpoint serves (version 1).
    served_model: String,

    /// The grants made on the object: a PUT with it changes nothing.
    acl: Value,
    /// One of them: a PATCH with it changes nothing.
    one_grant: Value,
}

/// A request: the values of the family's placeholders, in order, and the arguments (the query
/// string of a GET, the JSON body otherwise).
struct Call {
    args: Vec<String>,
    body: Value,
}

fn body(body: Value) -> Call {
    Call {
        args: Vec::new(),
        body,
    }
}

fn at(args: &[&str], body: Value) -> Call {
    Call {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        body,
    }
}

/// A route acting on one object, the lowest level of the object's ladder that may call it,
/// and a valid request on a fresh object (so a refusal can only be the permission's).
struct Route {
    method: &'static str,
    /// The mounted path, MLflow's four prefixes as `{mlflow}`, the artifact proxy's two as
    /// `{mlflow-artifacts}`, the jobs API's two as `{jobs}`.
    family: &'static str,
    /// Which request of the family this is, where one family has several.
    case: &'static str,
    kind: Kind,
    level: &'static str,
    call: fn(&Made) -> Call,
    /// What an allowed caller is answered.
    answer: StatusCode,
}

const fn route(
    method: &'static str,
    family: &'static str,
    kind: Kind,
    level: &'static str,
    call: fn(&Made) -> Call,
) -> Route {
    Route {
        method,
        family,
        case: "",
        kind,
        level,
        call,
        answer: StatusCode::OK,
    }
}

impl Route {
    const fn case(mut self, case: &'static str) -> Self {
        self.case = case;
        self
    }

    const fn answering(mut self, status: StatusCode) -> Self {
        self.answer = status;
        self
    }
}

use Kind::{Endpoint, Experiment, Job, Model};

const PERMISSIONS: &str = "/api/2.0/permissions/{object_type}/{object_id}";
const PERMISSION_LEVELS: &str = "/api/2.0/permissions/{object_type}/{object_id}/permissionLevels";

#[rustfmt::skip]
static REQUIRED: &[Route] = &[
    // Experiments (Databricks, "MLflow experiment permissions"): CAN_READ views runs and
    // lists and downloads their artifacts; CAN_EDIT creates, deletes and restores runs, logs
    // params, metrics, tags and artifacts and edits experiment tags; CAN_MANAGE purges and
    // changes permissions. Databricks governs renaming, deleting and restoring the experiment
    // itself through its folder; tarn has no folders, so those are the experiment's managers'
    // (MLflow's auth plugin, too, asks MANAGE to delete and restore).
    route("GET", "{mlflow}/experiments/get", Experiment, "CAN_READ", |m| body(json!({"experiment_id": m.experiment}))),
    route("GET", "{mlflow}/experiments/get-by-name", Experiment, "CAN_READ", |m| body(json!({"experiment_name": m.experiment_name}))),
    route("POST", "{mlflow}/experiments/update", Experiment, "CAN_MANAGE", |m| body(json!({"experiment_id": m.experiment, "new_name": format!("{}-renamed", m.experiment_name)}))),
    route("POST", "{mlflow}/experiments/delete", Experiment, "CAN_MANAGE", |m| body(json!({"experiment_id": m.experiment}))),
    route("POST", "{mlflow}/experiments/restore", Experiment, "CAN_MANAGE", |m| body(json!({"experiment_id": m.deleted_experiment}))),
    route("POST", "{mlflow}/experiments/set-experiment-tag", Experiment, "CAN_EDIT", |m| body(json!({"experiment_id": m.experiment, "key": "t2", "value": "v"}))),
    route("POST", "{mlflow}/experiments/delete-experiment-tag", Experiment, "CAN_EDIT", |m| body(json!({"experiment_id": m.experiment, "key": "t"}))),
    route("POST", "{mlflow}/runs/create", Experiment, "CAN_EDIT", |m| body(json!({"experiment_id": m.experiment}))),
    route("GET", "{mlflow}/runs/get", Experiment, "CAN_READ", |m| body(json!({"run_id": m.run}))),
    route("POST", "{mlflow}/runs/update", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "run_name": "renamed"}))),
    route("POST", "{mlflow}/runs/delete", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run}))),
    route("POST", "{mlflow}/runs/restore", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.deleted_run}))),
    route("POST", "{mlflow}/runs/log-metric", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "key": "m2", "value": 2.0, "timestamp": 2, "step": 1}))),
    route("POST", "{mlflow}/runs/log-parameter", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "key": "p2", "value": "2"}))),
    route("POST", "{mlflow}/runs/set-tag", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "key": "t2", "value": "2"}))),
    route("POST", "{mlflow}/runs/delete-tag", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "key": "t"}))),
    route("POST", "{mlflow}/runs/log-batch", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "metrics": [{"key": "m3", "value": 3.0, "timestamp": 3, "step": 0}], "params": [{"key": "p3", "value": "3"}], "tags": [{"key": "t3", "value": "3"}]}))),
    route("POST", "{mlflow}/runs/log-inputs", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "datasets": [{"dataset": {"name": "d", "digest": "abc", "source_type": "local", "source": "d.csv"}}]}))),
    route("POST", "{mlflow}/runs/outputs", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "models": [{"model_id": m.logged_model, "step": 1}]}))),
    route("POST", "{mlflow}/runs/log-model", Experiment, "CAN_EDIT", |m| body(json!({"run_id": m.run, "model_json": "{\"artifact_path\": \"model\", \"flavors\": {}}"}))),
    route("GET", "{mlflow}/metrics/get-history", Experiment, "CAN_READ", |m| body(json!({"run_id": m.run, "metric_key": "m"}))),
    route("GET", "{mlflow}/artifacts/list", Experiment, "CAN_READ", |m| body(json!({"run_id": m.run}))),
    // Logged models live in an experiment and take its permissions; Databricks lists no
    // ability of theirs, so MLflow's: creating and changing one needs EDIT, deleting MANAGE.
    // Their tags are edited as runs' are (Databricks: logging tags is CAN_EDIT), although
    // MLflow's plugin asks MANAGE to delete one.
    route("POST", "{mlflow}/logged-models", Experiment, "CAN_EDIT", |m| body(json!({"experiment_id": m.experiment, "name": "lm-2"}))),
    route("GET", "{mlflow}/logged-models/{model_id}", Experiment, "CAN_READ", |m| at(&[&m.logged_model], json!({}))),
    route("PATCH", "{mlflow}/logged-models/{model_id}", Experiment, "CAN_EDIT", |m| at(&[&m.logged_model], json!({"status": "LOGGED_MODEL_READY"}))),
    route("DELETE", "{mlflow}/logged-models/{model_id}", Experiment, "CAN_MANAGE", |m| at(&[&m.logged_model], json!({}))),
    route("PATCH", "{mlflow}/logged-models/{model_id}/tags", Experiment, "CAN_EDIT", |m| at(&[&m.logged_model], json!({"tags": [{"key": "lt2", "value": "v"}]}))),
    route("DELETE", "{mlflow}/logged-models/{model_id}/tags/{key}", Experiment, "CAN_EDIT", |m| at(&[&m.logged_model, "lt"], json!({}))),
    route("POST", "{mlflow}/logged-models/{model_id}/params", Experiment, "CAN_EDIT", |m| at(&[&m.logged_model], json!({"params": [{"key": "lp2", "value": "1"}]}))),
    // The artifact proxy: listing and downloading are reading, uploading is logging
    // artifacts (CAN_EDIT). Deleting one destroys data for good, which both Databricks
    // (purging) and MLflow's plugin (artifact DELETE) leave to CAN_MANAGE. Multipart uploads
    // need an S3 root: on a local one an allowed caller learns that it is unsupported.
    route("GET", "{mlflow-artifacts}/artifacts", Experiment, "CAN_READ", |m| body(json!({"path": format!("{}/{}/artifacts", m.experiment, m.run)}))),
    route("GET", "{mlflow-artifacts}/artifacts/{*path}", Experiment, "CAN_READ", |m| at(&[&format!("{}/{}/artifacts/file.txt", m.experiment, m.run)], json!({}))),
    route("PUT", "{mlflow-artifacts}/artifacts/{*path}", Experiment, "CAN_EDIT", |m| at(&[&format!("{}/{}/artifacts/new.txt", m.experiment, m.run)], json!({"new": "content"}))),
    route("DELETE", "{mlflow-artifacts}/artifacts/{*path}", Experiment, "CAN_MANAGE", |m| at(&[&format!("{}/{}/artifacts/file.txt", m.experiment, m.run)], json!({}))),
    route("POST", "{mlflow-artifacts}/mpu/create/{*path}", Experiment, "CAN_EDIT", |m| at(&[&format!("{}/{}/artifacts", m.experiment, m.run)], json!({"path": "big.bin", "num_parts": 1}))).answering(StatusCode::NOT_IMPLEMENTED),
    route("POST", "{mlflow-artifacts}/mpu/complete/{*path}", Experiment, "CAN_EDIT", |m| at(&[&format!("{}/{}/artifacts", m.experiment, m.run)], json!({"path": "big.bin", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e"}]}))).answering(StatusCode::NOT_IMPLEMENTED),
    route("POST", "{mlflow-artifacts}/mpu/abort/{*path}", Experiment, "CAN_EDIT", |m| at(&[&format!("{}/{}/artifacts", m.experiment, m.run)], json!({"path": "big.bin", "upload_id": "u"}))).answering(StatusCode::NOT_IMPLEMENTED),
    // Permissions: whoever sees the object sees who else may; changing them is CAN_MANAGE's.
    route("GET", PERMISSIONS, Experiment, "CAN_READ", |m| at(&["experiments", &m.experiment], json!({}))),
    route("GET", PERMISSION_LEVELS, Experiment, "CAN_READ", |m| at(&["experiments", &m.experiment], json!({}))),
    route("PATCH", PERMISSIONS, Experiment, "CAN_MANAGE", |m| at(&["experiments", &m.experiment], m.one_grant.clone())),
    route("PUT", PERMISSIONS, Experiment, "CAN_MANAGE", |m| at(&["experiments", &m.experiment], m.acl.clone())),

    // Registered models (Databricks, "MLflow model permissions"): CAN_READ views the model,
    // its versions, requests, activities and download URIs and may request a transition
    // (and comment); CAN_EDIT adds versions, updates descriptions and adds or edits tags (and,
    // with them, aliases); CAN_MANAGE_STAGING_VERSIONS transitions between None, Staging and
    // Archived and approves or rejects such requests; CAN_MANAGE_PRODUCTION_VERSIONS also
    // into and out of Production; CAN_MANAGE renames, deletes models and versions, cancels
    // others' requests (and edits others' comments), changes permissions and manages the
    // model's webhooks. Where MLflow's auth plugin differs (EDIT renames and transitions,
    // MANAGE deletes a version tag or an alias), Databricks' matrix is followed.
    route("GET", "{mlflow}/registered-models/get", Model, "CAN_READ", |m| body(json!({"name": m.model}))),
    route("POST", "{mlflow}/registered-models/rename", Model, "CAN_MANAGE", |m| body(json!({"name": m.model, "new_name": format!("{}-renamed", m.model)}))),
    route("PATCH", "{mlflow}/registered-models/update", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "description": "new"}))),
    route("DELETE", "{mlflow}/registered-models/delete", Model, "CAN_MANAGE", |m| body(json!({"name": m.model}))),
    route("GET", "{mlflow}/registered-models/get-latest-versions", Model, "CAN_READ", |m| body(json!({"name": m.model}))),
    route("POST", "{mlflow}/registered-models/get-latest-versions", Model, "CAN_READ", |m| body(json!({"name": m.model}))),
    route("POST", "{mlflow}/registered-models/set-tag", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "key": "t2", "value": "v"}))),
    route("DELETE", "{mlflow}/registered-models/delete-tag", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "key": "t"}))),
    route("POST", "{mlflow}/registered-models/alias", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "alias": "challenger", "version": "1"}))),
    route("DELETE", "{mlflow}/registered-models/alias", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "alias": "champion"}))),
    route("GET", "{mlflow}/registered-models/alias", Model, "CAN_READ", |m| body(json!({"name": m.model, "alias": "champion"}))),
    route("GET", "{mlflow}/databricks/registered-models/get", Model, "CAN_READ", |m| body(json!({"name": m.model}))),
    route("POST", "{mlflow}/model-versions/create", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "source": format!("runs:/{}/model", m.source_run)}))),
    route("GET", "{mlflow}/model-versions/get", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1"}))),
    route("PATCH", "{mlflow}/model-versions/update", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "version": "1", "description": "new"}))),
    route("DELETE", "{mlflow}/model-versions/delete", Model, "CAN_MANAGE", |m| body(json!({"name": m.model, "version": "1"}))),
    route("GET", "{mlflow}/model-versions/get-download-uri", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1"}))),
    route("POST", "{mlflow}/model-versions/set-tag", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "version": "1", "key": "vt2", "value": "v"}))),
    route("DELETE", "{mlflow}/model-versions/delete-tag", Model, "CAN_EDIT", |m| body(json!({"name": m.model, "version": "1", "key": "vt"}))),
    route("POST", "{mlflow}/model-versions/transition-stage", Model, "CAN_MANAGE_STAGING_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Staging", "archive_existing_versions": false}))).case("None to Staging"),
    route("POST", "{mlflow}/model-versions/transition-stage", Model, "CAN_MANAGE_STAGING_VERSIONS", |m| body(json!({"name": m.model, "version": "3", "stage": "Archived", "archive_existing_versions": false}))).case("Staging to Archived"),
    route("POST", "{mlflow}/model-versions/transition-stage", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Production", "archive_existing_versions": false}))).case("None to Production"),
    route("POST", "{mlflow}/model-versions/transition-stage", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "2", "stage": "Archived", "archive_existing_versions": false}))).case("Production to Archived"),
    route("POST", "{mlflow}/databricks/model-versions/transition-stage", Model, "CAN_MANAGE_STAGING_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Staging", "archive_existing_versions": false, "comment": "c"}))).case("None to Staging"),
    route("POST", "{mlflow}/databricks/model-versions/transition-stage", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "2", "stage": "Staging", "archive_existing_versions": false, "comment": "c"}))).case("Production to Staging"),
    route("POST", "{mlflow}/transition-requests/create", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1", "stage": "Archived"}))),
    route("POST", "{mlflow}/transition-requests/approve", Model, "CAN_MANAGE_STAGING_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Staging", "archive_existing_versions": false}))).case("None to Staging"),
    route("POST", "{mlflow}/transition-requests/approve", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Production", "archive_existing_versions": false}))).case("None to Production"),
    route("POST", "{mlflow}/transition-requests/approve", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "2", "stage": "Staging", "archive_existing_versions": false}))).case("Production to Staging"),
    route("POST", "{mlflow}/transition-requests/reject", Model, "CAN_MANAGE_STAGING_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Staging"}))).case("None to Staging"),
    route("POST", "{mlflow}/transition-requests/reject", Model, "CAN_MANAGE_PRODUCTION_VERSIONS", |m| body(json!({"name": m.model, "version": "1", "stage": "Production"}))).case("None to Production"),
    route("DELETE", "{mlflow}/transition-requests/delete", Model, "CAN_MANAGE", |m| body(json!({"name": m.model, "version": "1", "stage": "Staging", "creator": tarn_server::ADMIN_USER}))).case("another user's request"),
    route("GET", "{mlflow}/transition-requests/list", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1"}))),
    route("GET", "{mlflow}/model-versions/activities", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1"}))),
    route("POST", "{mlflow}/comments/create", Model, "CAN_READ", |m| body(json!({"name": m.model, "version": "1", "comment": "looks good"}))),
    route("PATCH", "{mlflow}/comments/update", Model, "CAN_MANAGE", |m| body(json!({"id": m.comment, "comment": "edited"}))).case("another user's comment"),
    route("DELETE", "{mlflow}/comments/delete", Model, "CAN_MANAGE", |m| body(json!({"id": m.comment}))).case("another user's comment"),
    route("POST", "{mlflow}/registry-webhooks/create", Model, "CAN_MANAGE", |m| body(json!({"model_name": m.model, "events": ["MODEL_VERSION_CREATED"], "http_url_spec": {"url": m.webhook_url}}))),
    route("GET", "{mlflow}/registry-webhooks/list", Model, "CAN_MANAGE", |m| body(json!({"model_name": m.model}))),
    route("PATCH", "{mlflow}/registry-webhooks/update", Model, "CAN_MANAGE", |m| body(json!({"id": m.webhook, "description": "changed"}))),
    route("DELETE", "{mlflow}/registry-webhooks/delete", Model, "CAN_MANAGE", |m| body(json!({"id": m.webhook}))),
    route("POST", "{mlflow}/registry-webhooks/test", Model, "CAN_MANAGE", |m| body(json!({"id": m.webhook}))),
    route("GET", "/api/2.0/tarn/webhooks/deliveries", Model, "CAN_MANAGE", |m| body(json!({"webhook_id": m.webhook}))).case("a model webhook's"),
    // A version's registry copy is read with the model's permissions.
    route("GET", "{mlflow-artifacts}/artifacts", Model, "CAN_READ", |m| body(json!({"path": m.copy}))).case("a registry copy"),
    route("GET", "{mlflow-artifacts}/artifacts/{*path}", Model, "CAN_READ", |m| at(&[&format!("{}/MLmodel", m.copy)], json!({}))).case("a registry copy"),
    route("GET", PERMISSIONS, Model, "CAN_READ", |m| at(&["registered-models", &m.model_id], json!({}))),
    route("GET", PERMISSION_LEVELS, Model, "CAN_READ", |m| at(&["registered-models", &m.model_id], json!({}))),
    route("PATCH", PERMISSIONS, Model, "CAN_MANAGE", |m| at(&["registered-models", &m.model_id], m.one_grant.clone())),
    route("PUT", PERMISSIONS, Model, "CAN_MANAGE", |m| at(&["registered-models", &m.model_id], m.acl.clone())),

    // Jobs (Databricks, "Jobs access control"): CAN_VIEW views the job, its settings and its
    // runs' results; CAN_MANAGE_RUN runs it now and cancels runs (a repair runs tasks again;
    // deleting an ended run is left to whoever manages runs, as Databricks does not say);
    // CAN_MANAGE and IS_OWNER edit settings, delete the job and change permissions.
    // (Databricks also leaves a run's logs to CAN_MANAGE_RUN; which fields of get-output a
    // viewer sees is not checked here, only that it may call it.)
    route("GET", "{jobs}/get", Job, "CAN_VIEW", |m| body(json!({"job_id": m.job}))),
    route("POST", "{jobs}/reset", Job, "CAN_MANAGE", |m| body(json!({"job_id": m.job, "new_settings": {"name": format!("{}-reset", m.job_name), "tasks": [{"task_key": "t", "spark_python_task": {"python_file": "/Workspace/y.py"}}]}}))),
    route("POST", "{jobs}/update", Job, "CAN_MANAGE", |m| body(json!({"job_id": m.job, "new_settings": {"name": format!("{}-updated", m.job_name)}}))),
    route("POST", "{jobs}/delete", Job, "CAN_MANAGE", |m| body(json!({"job_id": m.job}))),
    route("POST", "{jobs}/run-now", Job, "CAN_MANAGE_RUN", |m| body(json!({"job_id": m.job}))),
    route("GET", "{jobs}/runs/get", Job, "CAN_VIEW", |m| body(json!({"run_id": m.active_run}))),
    route("GET", "{jobs}/runs/list", Job, "CAN_VIEW", |m| body(json!({"job_id": m.job}))).case("one job's runs"),
    route("POST", "{jobs}/runs/cancel", Job, "CAN_MANAGE_RUN", |m| body(json!({"run_id": m.active_run}))),
    route("POST", "{jobs}/runs/cancel-all", Job, "CAN_MANAGE_RUN", |m| body(json!({"job_id": m.job}))),
    route("GET", "{jobs}/runs/get-output", Job, "CAN_VIEW", |m| body(json!({"run_id": m.active_run}))),
    route("POST", "{jobs}/runs/delete", Job, "CAN_MANAGE_RUN", |m| body(json!({"run_id": m.ended_run}))),
    route("POST", "{jobs}/runs/repair", Job, "CAN_MANAGE_RUN", |m| body(json!({"run_id": m.ended_run, "rerun_tasks": ["t"]}))),
    route("GET", PERMISSIONS, Job, "CAN_VIEW", |m| at(&["jobs", &m.job], json!({}))),
    route("GET", PERMISSION_LEVELS, Job, "CAN_VIEW", |m| at(&["jobs", &m.job], json!({}))),
    route("PATCH", PERMISSIONS, Job, "CAN_MANAGE", |m| at(&["jobs", &m.job], m.one_grant.clone())),
    route("PUT", PERMISSIONS, Job, "CAN_MANAGE", |m| at(&["jobs", &m.job], m.acl.clone())),

    // Serving endpoints (Databricks, "serving endpoint ACLs"): CAN_VIEW sees the endpoint,
    // CAN_QUERY queries it, CAN_MANAGE changes its config, deletes it and changes permissions.
    route("GET", "/api/2.0/serving-endpoints/{name}", Endpoint, "CAN_VIEW", |m| at(&[&m.endpoint], json!({}))),
    route("DELETE", "/api/2.0/serving-endpoints/{name}", Endpoint, "CAN_MANAGE", |m| at(&[&m.endpoint], json!({}))),
    route("PUT", "/api/2.0/serving-endpoints/{name}/config", Endpoint, "CAN_MANAGE", |m| at(&[&m.endpoint], json!({"served_entities": [{"name": "again", "entity_name": m.served_model, "entity_version": "1"}]}))),
    route("POST", "/serving-endpoints/{name}/invocations", Endpoint, "CAN_QUERY", |m| at(&[&m.endpoint], one_row(0))),
    route("GET", PERMISSIONS, Endpoint, "CAN_VIEW", |m| at(&["serving-endpoints", &m.endpoint_id], json!({}))),
    route("GET", PERMISSION_LEVELS, Endpoint, "CAN_VIEW", |m| at(&["serving-endpoints", &m.endpoint_id], json!({}))),
    route("PATCH", PERMISSIONS, Endpoint, "CAN_MANAGE", |m| at(&["serving-endpoints", &m.endpoint_id], m.one_grant.clone())),
    route("PUT", PERMISSIONS, Endpoint, "CAN_MANAGE", |m| at(&["serving-endpoints", &m.endpoint_id], m.acl.clone())),
];

/// The routes under the object-scoped prefixes that act on no one object, with why.
#[rustfmt::skip]
const NOT_OBJECT_SCOPED: &[(&str, &str)] = &[
    // Creating is the workspace's: any member may (and manages what it makes).
    ("POST", "{mlflow}/experiments/create"),
    ("POST", "{mlflow}/registered-models/create"),
    ("POST", "{jobs}/create"),
    ("POST", "/api/2.0/serving-endpoints"),
    // A one-time run belongs to its caller, not to a job.
    ("POST", "{jobs}/runs/submit"),
    // Lists and searches: they leave out what the caller may not see (checked below, LISTS).
    ("GET", "{mlflow}/experiments/search"),
    ("POST", "{mlflow}/experiments/search"),
    ("GET", "{mlflow}/experiments/list"),
    ("GET", "{mlflow}/runs/search"),
    ("POST", "{mlflow}/runs/search"),
    ("POST", "{mlflow}/logged-models/search"),
    ("GET", "{mlflow}/registered-models/search"),
    ("POST", "{mlflow}/registered-models/search"),
    ("GET", "{mlflow}/model-versions/search"),
    ("POST", "{mlflow}/model-versions/search"),
    ("GET", "{jobs}/list"),
    ("GET", "/api/2.0/serving-endpoints"),
    // An upload part is authorised by its signed URL, not by credentials (the sweep checks it).
    ("PUT", "{mlflow-artifacts}/mpu/part/{*path}"),
];

/// What the completeness check covers: routes whose family starts with one of these.
const OBJECT_SCOPED_PREFIXES: &[&str] = &[
    "{mlflow}/experiments/",
    "{mlflow}/runs/",
    "{mlflow}/metrics/",
    "{mlflow}/artifacts/",
    "{mlflow}/logged-models",
    "{mlflow}/registered-models/",
    "{mlflow}/model-versions/",
    "{mlflow}/transition-requests/",
    "{mlflow}/comments/",
    "{mlflow}/databricks/",
    "{mlflow}/registry-webhooks/",
    "{mlflow-artifacts}/",
    "{jobs}/",
    "/api/2.0/serving-endpoints",
    "/serving-endpoints/",
    "/api/2.0/permissions/",
];

/// A list or search, the object a fresh fixture makes, and what of it shows in the answer:
/// every level shows it, no grant hides it.
struct Listed {
    method: &'static str,
    family: &'static str,
    kind: Kind,
    call: fn(&Made) -> Call,
    shows: fn(&Made) -> String,
}

#[rustfmt::skip]
static LISTS: &[Listed] = &[
    Listed { method: "POST", family: "{mlflow}/experiments/search", kind: Experiment, call: |_| body(json!({"max_results": 1000})), shows: |m| m.experiment_name.clone() },
    Listed { method: "GET", family: "{mlflow}/experiments/list", kind: Experiment, call: |_| body(json!({"max_results": 1000})), shows: |m| m.experiment_name.clone() },
    Listed { method: "POST", family: "{mlflow}/runs/search", kind: Experiment, call: |m| body(json!({"experiment_ids": [m.experiment]})), shows: |m| m.run.clone() },
    Listed { method: "POST", family: "{mlflow}/logged-models/search", kind: Experiment, call: |m| body(json!({"experiment_ids": [m.experiment]})), shows: |m| m.logged_model.clone() },
    Listed { method: "GET", family: "{mlflow}/registered-models/search", kind: Model, call: |m| body(json!({"filter": format!("name = '{}'", m.model)})), shows: |m| m.model.clone() },
    Listed { method: "GET", family: "{mlflow}/model-versions/search", kind: Model, call: |m| body(json!({"filter": format!("name = '{}'", m.model)})), shows: |m| m.model.clone() },
    Listed { method: "GET", family: "{jobs}/list", kind: Job, call: |m| body(json!({"name": m.job_name})), shows: |m| m.job_name.clone() },
    Listed { method: "GET", family: "{jobs}/runs/list", kind: Job, call: |_| body(json!({})), shows: |m| m.job_name.clone() },
    Listed { method: "GET", family: "/api/2.0/serving-endpoints", kind: Endpoint, call: |_| body(json!({})), shows: |m| m.endpoint.clone() },
];

/// The concrete path of a family as these tests call it (MLflow under `/api/2.0/mlflow`, the
/// jobs API under 2.2), with `args` in its placeholders.
fn concrete(family: &str, args: &[String]) -> String {
    let expanded = family
        .replacen("{mlflow}", "/api/2.0/mlflow", 1)
        .replacen("{mlflow-artifacts}", "/api/2.0/mlflow-artifacts", 1)
        .replacen("{jobs}", "/api/2.2/jobs", 1);
    let mut args = args.iter();
    let path = expanded
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                args.next()
                    .unwrap_or_else(|| panic!("{family} needs a value for {segment}"))
                    .clone()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    assert!(args.next().is_none(), "{family} has fewer placeholders");
    path
}

/// A mounted path's family: MLflow's four prefixes, the artifact proxy's two and the jobs
/// API's two each become one name.
fn family(path: &str) -> String {
    for (prefix, name) in [
        ("/api/2.0/mlflow/", "{mlflow}/"),
        ("/ajax-api/2.0/mlflow/", "{mlflow}/"),
        ("/api/3.0/mlflow/", "{mlflow}/"),
        ("/ajax-api/3.0/mlflow/", "{mlflow}/"),
        ("/api/2.0/mlflow-artifacts/", "{mlflow-artifacts}/"),
        ("/ajax-api/2.0/mlflow-artifacts/", "{mlflow-artifacts}/"),
        ("/api/2.2/jobs/", "{jobs}/"),
        ("/api/2.1/jobs/", "{jobs}/"),
    ] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return format!("{name}{rest}");
        }
    }
    path.to_string()
}

/// Every (method, family) the router answers at the bare paths.
async fn mounted_routes(app: &TestApp) -> BTreeSet<(String, String)> {
    let mut mounted = BTreeSet::new();
    for path in tarn_server::mounted_paths() {
        if path.starts_with("/ws/") {
            continue;
        }
        let uri = path
            .split('/')
            .map(|segment| match segment {
                s if s.starts_with("{*") => "probe/file.txt",
                s if s.starts_with('{') => "probe",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let answer = app.call(method, &uri, None, json!({})).await;
            if answer.status != StatusCode::METHOD_NOT_ALLOWED {
                mounted.insert((method.to_string(), family(&path)));
            }
        }
    }
    mounted
}

#[tokio::test]
async fn every_object_scoped_route_has_its_required_level() {
    let app = app().await;
    let mounted = mounted_routes(&app).await;
    let listed: BTreeSet<(String, String)> = REQUIRED
        .iter()
        .map(|r| (r.method, r.family))
        .chain(NOT_OBJECT_SCOPED.iter().copied())
        .map(|(method, family)| (method.to_string(), family.to_string()))
        .collect();
    let missing: Vec<_> = mounted
        .iter()
        .filter(|(_, family)| {
            OBJECT_SCOPED_PREFIXES
                .iter()
                .any(|prefix| family.starts_with(prefix))
        })
        .filter(|route| !listed.contains(*route))
        .collect();
    assert!(
        missing.is_empty(),
        "object-scoped routes with no required level (add them to REQUIRED, or to \
         NOT_OBJECT_SCOPED with the reason): {missing:?}"
    );
    let lists = LISTS
        .iter()
        .map(|l| (l.method.to_string(), l.family.to_string()));
    let stale: Vec<_> = listed
        .iter()
        .cloned()
        .chain(lists)
        .filter(|route| !mounted.contains(route))
        .collect();
    assert!(stale.is_empty(), "listed but not mounted: {stale:?}");
    for kind in [Experiment, Model, Job, Endpoint] {
        for route in REQUIRED.iter().filter(|r| r.kind == kind) {
            kind.rank(Some(route.level));
        }
    }
}

struct User {
    level: Option<&'static str>,
    token: String,
}

/// One test's users (one per level of the kind's ladder, lowest first, after one with no
/// grant) and what every fixture of the kind shares.
struct Env<'a> {
    app: &'a TestApp,
    kind: Kind,
    users: Vec<(String, User)>,
    made: usize,
    source_run: String,
    webhook_url: String,
    served_model: String,
}

impl<'a> Env<'a> {
    async fn new(app: &'a TestApp, kind: Kind) -> Env<'a> {
        let mut users = Vec::new();
        let levels = std::iter::once(None).chain(kind.ladder().iter().map(|(l, _)| Some(*l)));
        for level in levels {
            let name = format!(
                "{}-{}",
                kind.slug(),
                level.unwrap_or("none").to_lowercase().replace('_', "-")
            );
            let token = app.user_with_token(&name, "dev").await;
            users.push((name, User { level, token }));
        }
        let mut env = Env {
            app,
            kind,
            users,
            made: 0,
            source_run: String::new(),
            webhook_url: String::new(),
            served_model: String::new(),
        };
        match kind {
            Model => {
                // Versions are made from a run every user may read, so that making one is
                // refused for the model's sake only.
                env.source_run = app.new_run("0").await;
                upload_model(app, "0", &env.source_run).await;
                env.grant_everyone("experiments", "0", "CAN_READ").await;
                env.webhook_url = webhook_receiver().await;
            }
            Endpoint => {
                // Changing a config needs the served model readable: every user may read it.
                env.served_model = "ple-served".to_string();
                register(app, &env.served_model, "scaled_logistic").await;
                let id = model_id(app, &env.served_model).await;
                env.grant_everyone("registered-models", &id, "CAN_READ")
                    .await;
            }
            Experiment | Job => {}
        }
        env
    }

    async fn grant_everyone(&self, segment: &str, id: &str, level: &str) {
        let acl: Vec<Value> = self
            .users
            .iter()
            .map(|(name, _)| json!({"user_name": name, "permission_level": level}))
            .collect();
        made(
            self.app,
            "PATCH",
            &format!("/api/2.0/permissions/{segment}/{id}"),
            json!({ "access_control_list": acl }),
        )
        .await;
    }

    /// Grants each user its level on the object; returns the list granted and one entry.
    async fn grant(&self, object_id: &str) -> (Value, Value) {
        let acl: Vec<Value> = self
            .users
            .iter()
            .filter_map(|(name, user)| {
                user.level
                    .map(|level| json!({"user_name": name, "permission_level": level}))
            })
            .collect();
        let acl = json!({ "access_control_list": acl });
        // A job has exactly one owner: its list is replaced, which makes the owner's user
        // the owner in the admin's stead. Other objects take the grants beside the creator's.
        let method = if self.kind == Job { "PUT" } else { "PATCH" };
        made(
            self.app,
            method,
            &format!(
                "/api/2.0/permissions/{}/{object_id}",
                self.kind.permissions_segment()
            ),
            acl.clone(),
        )
        .await;
        let one = json!({ "access_control_list": [acl["access_control_list"][0].clone()] });
        (acl, one)
    }

    /// A fresh object of the kind, granted to the users.
    async fn make(&mut self) -> Made {
        self.made += 1;
        let tag = format!("{}-{}", self.kind.slug(), self.made);
        match self.kind {
            Experiment => self.make_experiment(&tag).await,
            Model => self.make_model(&tag).await,
            Job => self.make_job(&tag).await,
            Endpoint => self.make_endpoint(&tag).await,
        }
    }

    async fn make_experiment(&self, name: &str) -> Made {
        let app = self.app;
        let mlflow = "/api/2.0/mlflow";
        let create = |name: String| async move {
            made(
                app,
                "POST",
                &format!("{mlflow}/experiments/create"),
                json!({ "name": name }),
            )
            .await["experiment_id"]
                .as_str()
                .expect("experiment id")
                .to_string()
        };
        let experiment = create(name.to_string()).await;
        let deleted_experiment = create(format!("{name}-deleted")).await;
        made(
            app,
            "POST",
            &format!("{mlflow}/experiments/set-experiment-tag"),
            json!({"experiment_id": experiment, "key": "t", "value": "v"}),
        )
        .await;
        let run = app.new_run(&experiment).await;
        made(
            app,
            "POST",
            &format!("{mlflow}/runs/log-batch"),
            json!({
                "run_id": run,
                "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}],
                "params": [{"key": "p", "value": "1"}],
                "tags": [{"key": "t", "value": "v"}],
            }),
        )
        .await;
        let upload = app
            .call_raw_put(
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/file.txt"
                ),
                "hello",
            )
            .await;
        assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
        let deleted_run = app.new_run(&experiment).await;
        let logged_model = made(
            app,
            "POST",
            &format!("{mlflow}/logged-models"),
            json!({"experiment_id": experiment, "name": "lm", "source_run_id": run}),
        )
        .await["model"]["info"]["model_id"]
            .as_str()
            .expect("logged model id")
            .to_string();
        made(
            app,
            "PATCH",
            &format!("{mlflow}/logged-models/{logged_model}/tags"),
            json!({"tags": [{"key": "lt", "value": "v"}]}),
        )
        .await;
        let (acl, one_grant) = self.grant(&experiment).await;
        self.grant(&deleted_experiment).await;
        made(
            app,
            "POST",
            &format!("{mlflow}/runs/delete"),
            json!({ "run_id": deleted_run }),
        )
        .await;
        made(
            app,
            "POST",
            &format!("{mlflow}/experiments/delete"),
            json!({ "experiment_id": deleted_experiment }),
        )
        .await;
        Made {
            experiment,
            experiment_name: name.to_string(),
            deleted_experiment,
            run,
            deleted_run,
            logged_model,
            acl,
            one_grant,
            ..Made::default()
        }
    }

    async fn make_model(&self, name: &str) -> Made {
        let app = self.app;
        let mlflow = "/api/2.0/mlflow";
        let post = |path: &'static str, body: Value| async move {
            made(app, "POST", &format!("{mlflow}/{path}"), body).await
        };
        post(
            "registered-models/create",
            json!({"name": name, "tags": [{"key": "t", "value": "v"}]}),
        )
        .await;
        for _ in 1..=3 {
            post(
                "model-versions/create",
                json!({"name": name, "source": format!("runs:/{}/model", self.source_run)}),
            )
            .await;
        }
        let transition = |version: &'static str, stage: &'static str| {
            post(
                "model-versions/transition-stage",
                json!({"name": name, "version": version, "stage": stage, "archive_existing_versions": false}),
            )
        };
        transition("2", "Production").await;
        transition("3", "Staging").await;
        post(
            "model-versions/set-tag",
            json!({"name": name, "version": "1", "key": "vt", "value": "v"}),
        )
        .await;
        post(
            "registered-models/alias",
            json!({"name": name, "alias": "champion", "version": "1"}),
        )
        .await;
        for (version, stage) in [("1", "Staging"), ("1", "Production"), ("2", "Staging")] {
            post(
                "transition-requests/create",
                json!({"name": name, "version": version, "stage": stage}),
            )
            .await;
        }
        let comment = post(
            "comments/create",
            json!({"name": name, "version": "1", "comment": "the admin's"}),
        )
        .await["comment"]["id"]
            .as_str()
            .expect("comment id")
            .to_string();
        let webhook = post(
            "registry-webhooks/create",
            json!({"model_name": name, "events": ["MODEL_VERSION_CREATED"], "http_url_spec": {"url": self.webhook_url}}),
        )
        .await["webhook"]["id"]
            .as_str()
            .expect("webhook id")
            .to_string();
        let copy = made(
            app,
            "GET",
            &format!("{mlflow}/model-versions/get-download-uri"),
            json!({"name": name, "version": "1"}),
        )
        .await["artifact_uri"]
            .as_str()
            .and_then(|uri| uri.strip_prefix("mlflow-artifacts:/"))
            .expect("download uri")
            .trim_matches('/')
            .to_string();
        let model_id = model_id(app, name).await;
        let (acl, one_grant) = self.grant(&model_id).await;
        Made {
            model: name.to_string(),
            model_id,
            copy,
            source_run: self.source_run.clone(),
            comment,
            webhook,
            webhook_url: self.webhook_url.clone(),
            acl,
            one_grant,
            ..Made::default()
        }
    }

    async fn make_job(&self, name: &str) -> Made {
        let app = self.app;
        let job = made(
            app,
            "POST",
            "/api/2.2/jobs/create",
            json!({"name": name, "tasks": [{"task_key": "t", "spark_python_task": {"python_file": "/Workspace/x.py"}}]}),
        )
        .await["job_id"]
            .to_string();
        let (acl, one_grant) = self.grant(&job).await;
        // The ended run: cancelled, then ended by the runner's passes (no runner runs here).
        let ended_run = run_now(app, &job).await;
        made(
            app,
            "POST",
            "/api/2.2/jobs/runs/cancel",
            json!({"run_id": ended_run}),
        )
        .await;
        let mut ended = false;
        for _ in 0..10 {
            tarn_jobs::runner::pass(app.state.store.as_ref(), tarn_core::ids::now_millis())
                .await
                .expect("runner pass");
            let run = made(
                app,
                "GET",
                "/api/2.2/jobs/runs/get",
                json!({"run_id": ended_run}),
            )
            .await;
            if run["state"]["result_state"].is_string() {
                ended = true;
                break;
            }
        }
        assert!(ended, "run {ended_run} did not end");
        let active_run = run_now(app, &job).await;
        Made {
            job,
            job_name: name.to_string(),
            active_run,
            ended_run,
            acl,
            one_grant,
            ..Made::default()
        }
    }

    async fn make_endpoint(&self, name: &str) -> Made {
        let created = made(
            self.app,
            "POST",
            "/api/2.0/serving-endpoints",
            json!({"name": name, "config": {"served_entities": [{"entity_name": self.served_model, "entity_version": "1"}]}}),
        )
        .await;
        let endpoint_id = created["id"].as_str().expect("endpoint id").to_string();
        let (acl, one_grant) = self.grant(&endpoint_id).await;
        Made {
            endpoint: name.to_string(),
            endpoint_id,
            served_model: self.served_model.clone(),
            acl,
            one_grant,
            ..Made::default()
        }
    }

    /// What the admin reads of the object: a refused call must leave all of it as it was.
    async fn snapshot(&self, m: &Made) -> Value {
        let mlflow = "/api/2.0/mlflow";
        let reads: Vec<(String, Value)> = match self.kind {
            Experiment => vec![
                (
                    format!("{mlflow}/experiments/get"),
                    json!({"experiment_id": m.experiment}),
                ),
                (
                    format!("{mlflow}/experiments/get"),
                    json!({"experiment_id": m.deleted_experiment}),
                ),
                (format!("{mlflow}/runs/get"), json!({"run_id": m.run})),
                (
                    format!("{mlflow}/runs/get"),
                    json!({"run_id": m.deleted_run}),
                ),
                (
                    format!("{mlflow}/runs/search"),
                    json!({"experiment_ids": m.experiment, "run_view_type": "ALL"}),
                ),
                (
                    format!("{mlflow}/logged-models/{}", m.logged_model),
                    json!({}),
                ),
                (
                    "/api/2.0/mlflow-artifacts/artifacts".to_string(),
                    json!({"path": format!("{}/{}/artifacts", m.experiment, m.run)}),
                ),
                (
                    format!("/api/2.0/permissions/experiments/{}", m.experiment),
                    json!({}),
                ),
            ],
            Model => {
                let mut reads = vec![
                    (
                        format!("{mlflow}/registered-models/get"),
                        json!({"name": m.model}),
                    ),
                    (
                        format!("{mlflow}/model-versions/search"),
                        json!({"filter": format!("name = '{}'", m.model)}),
                    ),
                    (
                        format!("{mlflow}/registry-webhooks/list"),
                        json!({"model_name": m.model}),
                    ),
                    (
                        format!("/api/2.0/permissions/registered-models/{}", m.model_id),
                        json!({}),
                    ),
                ];
                for version in ["1", "2", "3"] {
                    reads.push((
                        format!("{mlflow}/model-versions/activities"),
                        json!({"name": m.model, "version": version}),
                    ));
                    reads.push((
                        format!("{mlflow}/transition-requests/list"),
                        json!({"name": m.model, "version": version}),
                    ));
                }
                reads
            }
            Job => vec![
                ("/api/2.2/jobs/get".to_string(), json!({"job_id": m.job})),
                (
                    "/api/2.2/jobs/runs/list".to_string(),
                    json!({"job_id": m.job, "expand_tasks": true}),
                ),
                (format!("/api/2.0/permissions/jobs/{}", m.job), json!({})),
            ],
            Endpoint => vec![
                (
                    format!("/api/2.0/serving-endpoints/{}", m.endpoint),
                    json!({}),
                ),
                (
                    format!("/api/2.0/permissions/serving-endpoints/{}", m.endpoint_id),
                    json!({}),
                ),
            ],
        };
        let mut seen = Vec::new();
        for (path, args) in reads {
            let read = self.app.admin("GET", &path, args).await;
            seen.push(json!({"read": path, "status": read.status.as_u16(), "body": read.json}));
        }
        Value::Array(seen)
    }
}

/// POSTs (or whatever `method`) as the admin and expects success.
async fn made(app: &TestApp, method: &str, path: &str, body: Value) -> Value {
    let response = app.admin(method, path, body).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{method} {path}: {}",
        response.text
    );
    response.json
}

async fn run_now(app: &TestApp, job: &str) -> String {
    made(
        app,
        "POST",
        "/api/2.2/jobs/run-now",
        json!({ "job_id": job }),
    )
    .await["run_id"]
        .to_string()
}

async fn model_id(app: &TestApp, name: &str) -> String {
    made(
        app,
        "GET",
        "/api/2.0/mlflow/databricks/registered-models/get",
        json!({ "name": name }),
    )
    .await["registered_model_databricks"]["id"]
        .as_str()
        .expect("model id")
        .to_string()
}

/// Uploads a small model directory (the scaled logistic ONNX fixture) into the run's artifacts.
async fn upload_model(app: &TestApp, experiment: &str, run: &str) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/scaled_logistic");
    for file in ["MLmodel", "model.onnx"] {
        let bytes = std::fs::read(folder.join(file)).expect("fixture file");
        let upload = app
            .call_raw_put(
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/model/{file}"
                ),
                bytes,
            )
            .await;
        assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
    }
}

/// A local HTTP server answering every POST with 200, for webhooks' destinations and tests.
async fn webhook_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let receiver = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move {
        axum::serve(listener, receiver).await.expect("receiver");
    });
    format!("http://{address}/hook")
}

/// Calls every route of `kind` as every user, each on a fresh object (refused calls, which
/// must leave it as it was, share one), and returns what went wrong.
async fn check_levels(env: &mut Env<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let kind = env.kind;
    for route in REQUIRED.iter().filter(|r| r.kind == kind) {
        let required = kind.rank(Some(route.level));
        let mut fixture: Option<Made> = None;
        for index in 0..env.users.len() {
            let made = match fixture.take() {
                Some(made) => made,
                None => env.make().await,
            };
            let (name, user) = &env.users[index];
            let call = (route.call)(&made);
            let path = concrete(route.family, &call.args);
            let case = if route.case.is_empty() {
                String::new()
            } else {
                format!(", {}", route.case)
            };
            let what = format!(
                "{} {}{case} (needs {}) as {name}",
                route.method, route.family, route.level
            );
            let allowed = kind.rank(user.level) >= required;
            let before = if allowed {
                Value::Null
            } else {
                env.snapshot(&made).await
            };
            let answer = env
                .app
                .call(route.method, &path, Some(user.token.as_str()), call.body)
                .await;
            if allowed {
                if answer.status != route.answer {
                    failures.push(format!(
                        "{what}: allowed, but answered {} {}",
                        answer.status, answer.text
                    ));
                }
                // A read leaves the object for the next user.
                if route.method == "GET" {
                    fixture = Some(made);
                }
            } else {
                if answer.status != StatusCode::FORBIDDEN
                    || answer.json["error_code"] != "PERMISSION_DENIED"
                {
                    failures.push(format!(
                        "{what}: must be refused, answered {} {}",
                        answer.status, answer.text
                    ));
                }
                let after = env.snapshot(&made).await;
                if before != after {
                    failures.push(format!(
                        "{what}: refused, but the object changed:\n  before {before}\n  after  {after}"
                    ));
                } else {
                    fixture = Some(made);
                }
            }
        }
    }
    failures
}

/// Lists show the object to every level and hide it from the user with no grant.
async fn check_lists(env: &mut Env<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let made = env.make().await;
    for list in LISTS.iter().filter(|l| l.kind == env.kind) {
        let call = (list.call)(&made);
        let path = concrete(list.family, &call.args);
        let needle = (list.shows)(&made);
        for (name, user) in &env.users {
            let answer = env
                .app
                .call(
                    list.method,
                    &path,
                    Some(user.token.as_str()),
                    call.body.clone(),
                )
                .await;
            let shown = answer.text.contains(&needle);
            if answer.status != StatusCode::OK || shown != user.level.is_some() {
                failures.push(format!(
                    "{} {} as {name}: {} {} {}",
                    list.method,
                    list.family,
                    answer.status,
                    if user.level.is_some() {
                        "must show"
                    } else {
                        "must hide"
                    },
                    needle
                ));
            }
        }
    }
    failures
}

async fn check(kind: Kind) {
    let app = app().await;
    let mut env = Env::new(&app, kind).await;
    let mut failures = check_lists(&mut env).await;
    failures.extend(check_levels(&mut env).await);
    assert!(
        failures.is_empty(),
        "{} permission failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn experiment_levels_allow_what_they_include_and_nothing_more() {
    check(Experiment).await;
}

#[tokio::test]
async fn registered_model_levels_allow_what_they_include_and_nothing_more() {
    check(Model).await;
}

#[tokio::test]
async fn job_levels_allow_what_they_include_and_nothing_more() {
    check(Job).await;
}

#[tokio::test]
async fn serving_endpoint_levels_allow_what_they_include_and_nothing_more() {
    check(Endpoint).await;
}

/// A transition request's creator may cancel it (Databricks: "the creator of a stage
/// transition request can also cancel the request"), and a comment's author edit it, with
/// no more than CAN_READ.
#[tokio::test]
async fn a_reader_cancels_its_own_request_and_edits_its_own_comment() {
    let app = app().await;
    let mut env = Env::new(&app, Model).await;
    let made = env.make().await;
    let (_, reader) = &env.users[1];
    assert_eq!(reader.level, Some("CAN_READ"));
    let requested = as_user(
        &app,
        &reader.token,
        "POST",
        "transition-requests/create",
        json!({"name": made.model, "version": "3", "stage": "Production"}),
    )
    .await;
    assert_eq!(requested.status, StatusCode::OK, "{}", requested.text);
    let cancelled = as_user(
        &app,
        &reader.token,
        "DELETE",
        "transition-requests/delete",
        json!({"name": made.model, "version": "3", "stage": "Production"}),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    let commented = as_user(
        &app,
        &reader.token,
        "POST",
        "comments/create",
        json!({"name": made.model, "version": "3", "comment": "mine"}),
    )
    .await;
    assert_eq!(commented.status, StatusCode::OK, "{}", commented.text);
    let id = commented.json["comment"]["id"]
        .as_str()
        .expect("comment id")
        .to_string();
    let edited = as_user(
        &app,
        &reader.token,
        "PATCH",
        "comments/update",
        json!({"id": id, "comment": "mine, edited"}),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    let deleted = as_user(
        &app,
        &reader.token,
        "DELETE",
        "comments/delete",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
}

async fn as_user(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> crate::Response {
    app.call(
        method,
        &format!("/api/2.0/mlflow/{path}"),
        Some(token),
        body,
    )
    .await
}

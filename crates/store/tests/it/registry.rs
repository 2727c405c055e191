//! Backend-independent behaviour of the model registry store and its event log.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::{ObjectType, PermissionLevel, Principal, PrincipalKind};
use tarn_core::entities::KeyValue;
use tarn_core::events::{Change, EventQuery};
use tarn_core::registry::{ActivityType, Actor, NewModelVersion, RequestOutcome, Stage};
use tarn_core::search::{Comparator, Comparison, Entity, OrderBy, Value};
use tarn_core::store::{MetaStore, ReadableBy, SearchRegistry};

type Store = Arc<dyn MetaStore>;

async fn setup(store: &Store) -> Actor {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let owner = store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    Actor {
        id: owner.id,
        name: owner.name,
    }
}

/// The non-admin principal behind `actor`, as the server hands it to the store.
fn principal_of(actor: &Actor) -> Principal {
    Principal {
        id: actor.id,
        name: actor.name.clone(),
        kind: PrincipalKind::User,
        is_admin: false,
        group_ids: Vec::new(),
        only_workspace: None,
    }
}

fn version(name: &str, location: &str) -> NewModelVersion {
    NewModelVersion {
        name: name.into(),
        source: format!("models:/m-{location}"),
        run_id: Some(format!("run-{location}")),
        run_link: None,
        description: String::new(),
        tags: vec![],
        model_id: Some(format!("m-{location}")),
        storage_location: format!("_registry/x/{location}"),
        checksum: "c0ffee".into(),
    }
}

fn query(filter: Vec<Comparison>) -> SearchRegistry {
    SearchRegistry {
        filter,
        order_by: vec![],
        max_results: 100,
        offset: 0,
        readable_by: None,
    }
}

fn tag_eq(key: &str, value: &str) -> Comparison {
    Comparison {
        entity: Entity::Tag,
        key: key.into(),
        comparator: Comparator::Eq,
        value: Value::Str(value.into()),
    }
}

pub async fn registered_models_lifecycle(store: Store) {
    let actor = setup(&store).await;
    let tags = [KeyValue {
        key: "team".into(),
        value: "risk".into(),
    }];
    let model = store
        .create_registered_model("dev", "fraud", "first", &tags, &actor)
        .await
        .expect("create");
    assert_eq!(model.name, "fraud");
    assert_eq!(model.tags, tags.to_vec());
    let duplicate = store
        .create_registered_model("dev", "fraud", "", &[], &actor)
        .await
        .expect_err("duplicate");
    assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
    // Names are per workspace.
    store
        .create_registered_model("prod", "fraud", "", &[], &actor)
        .await
        .expect("same name in prod");
    // The creator manages it.
    assert_eq!(
        store
            .granted_levels("dev", ObjectType::RegisteredModel, &model.id, &[actor.id])
            .await
            .expect("levels"),
        vec![PermissionLevel::CanManage]
    );

    let renamed = store
        .rename_registered_model("dev", "fraud", "fraud-v2", &actor)
        .await
        .expect("rename");
    assert_eq!(renamed.id, model.id, "the id survives a rename");
    assert_eq!(
        store
            .get_registered_model("dev", "fraud")
            .await
            .expect_err("old name")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    store
        .update_registered_model("dev", "fraud-v2", "second", &actor)
        .await
        .expect("update");
    store
        .delete_registered_model_tag("dev", "fraud-v2", "team", &actor)
        .await
        .expect("delete tag");
    let read = store
        .get_registered_model("dev", "fraud-v2")
        .await
        .expect("get");
    assert_eq!((read.description.as_str(), read.tags.len()), ("second", 0));

    store
        .create_model_version("dev", &version("fraud-v2", "a"), &actor)
        .await
        .expect("version");
    let locations = store
        .delete_registered_model("dev", "fraud-v2", &actor)
        .await
        .expect("delete");
    assert_eq!(locations, vec!["_registry/x/a".to_string()]);
    assert!(
        store
            .object_grants("dev", ObjectType::RegisteredModel, &model.id)
            .await
            .expect("grants")
            .is_empty(),
        "grants go with the model"
    );
    assert_eq!(
        store
            .get_registered_model("prod", "fraud")
            .await
            .expect("prod untouched")
            .name,
        "fraud"
    );
}

pub async fn versions_stages_and_aliases(store: Store) {
    let actor = setup(&store).await;
    let owner = principal_of(&actor);
    store
        .create_registered_model("dev", "m", "", &[], &actor)
        .await
        .expect("create");
    for location in ["a", "b", "c"] {
        store
            .create_model_version("dev", &version("m", location), &actor)
            .await
            .expect("version");
    }
    let first = store.get_model_version("dev", "m", 1).await.expect("get");
    assert_eq!(
        (first.current_stage, first.storage_location.as_str()),
        (Stage::None, "_registry/x/a")
    );
    store
        .transition_stage("dev", "m", 1, Stage::Production, false, "", &owner)
        .await
        .expect("to production");
    store
        .transition_stage("dev", "m", 2, Stage::Staging, false, "", &owner)
        .await
        .expect("to staging");
    let third = store
        .transition_stage("dev", "m", 3, Stage::Production, true, "", &owner)
        .await
        .expect("to production, archiving");
    assert_eq!(third.current_stage, Stage::Production);
    assert_eq!(
        store
            .get_model_version("dev", "m", 1)
            .await
            .expect("get")
            .current_stage,
        Stage::Archived
    );
    let refused = store
        .transition_stage("dev", "m", 1, Stage::None, true, "", &owner)
        .await
        .expect_err("archive_existing needs an active stage");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
    let latest = store
        .latest_versions("dev", "m", &[Stage::Production, Stage::Staging])
        .await
        .expect("latest");
    assert_eq!(
        latest
            .iter()
            .map(|v| (v.current_stage, v.version))
            .collect::<Vec<_>>(),
        vec![(Stage::Staging, 2), (Stage::Production, 3)]
    );

    store
        .set_alias("dev", "m", "champion", 2, &actor)
        .await
        .expect("alias");
    store
        .set_alias("dev", "m", "champion", 3, &actor)
        .await
        .expect("move alias");
    let champion = store
        .version_by_alias("dev", "m", "champion")
        .await
        .expect("by alias");
    assert_eq!(
        (champion.version, champion.aliases.clone()),
        (3, vec!["champion".to_string()])
    );
    let unknown_version = store
        .set_alias("dev", "m", "x", 9, &actor)
        .await
        .expect_err("unknown version");
    assert_eq!(unknown_version.code, ErrorCode::ResourceDoesNotExist);

    let removed = store
        .delete_model_version("dev", "m", 3, &actor)
        .await
        .expect("delete version");
    assert_eq!(removed, "_registry/x/c");
    assert_eq!(
        store
            .version_by_alias("dev", "m", "champion")
            .await
            .expect_err("alias went with the version")
            .code,
        ErrorCode::InvalidParameterValue
    );
    let next = store
        .create_model_version("dev", &version("m", "d"), &actor)
        .await
        .expect("version after delete");
    assert_eq!(next.version, 4, "version numbers are never reused");
    assert_eq!(
        store
            .get_model_version("dev", "missing", 1)
            .await
            .expect_err("no model")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

pub async fn transitions_check_stage_levels_in_their_write(store: Store) {
    let owner = setup(&store).await;
    store
        .create_registered_model("dev", "m", "", &[], &owner)
        .await
        .expect("create");
    store
        .create_model_version("dev", &version("m", "a"), &owner)
        .await
        .expect("version");
    let model_id = store.registered_model_id("dev", "m").await.expect("id");
    let mut principals = Vec::new();
    for (name, level) in [
        ("stranger", None),
        ("reader", Some(PermissionLevel::CanRead)),
        ("stager", Some(PermissionLevel::CanManageStagingVersions)),
        (
            "producer",
            Some(PermissionLevel::CanManageProductionVersions),
        ),
    ] {
        let record = store
            .create_principal(name, PrincipalKind::User, false, None, "tester")
            .await
            .expect("principal");
        if let Some(level) = level {
            store
                .update_grants(
                    "dev",
                    ObjectType::RegisteredModel,
                    &model_id,
                    &[(name.into(), level)],
                    &owner,
                )
                .await
                .expect("grant");
        }
        principals.push(principal_of(&Actor {
            id: record.id,
            name: record.name,
        }));
    }
    let [stranger, reader, stager, producer] = &principals[..] else {
        unreachable!("four principals")
    };
    let transition = |version: i64, stage: Stage, archive: bool, who: &Principal| {
        let (store, who) = (store.clone(), who.clone());
        async move {
            store
                .transition_stage("dev", "m", version, stage, archive, "", &who)
                .await
        }
    };
    let refused = |version, stage, archive, who| {
        let attempt = transition(version, stage, archive, who);
        async move { attempt.await.expect_err("refused").code }
    };
    use ErrorCode::{PermissionDenied as Denied, ResourceDoesNotExist as Missing};

    let missing_model = store
        .transition_stage("dev", "nope", 1, Stage::Staging, false, "", stranger)
        .await
        .expect_err("unknown model");
    assert_eq!(missing_model.code, Missing);
    // (version, to, archive_existing, who, expected): a model's versions are known only to
    // its readers; readers move nothing; staging managers move outside Production only; the
    // level is checked before the request's own validity, so a refused caller learns nothing.
    let before_staging = [
        (9, Stage::Staging, false, stranger, Denied),
        (9, Stage::Staging, false, reader, Missing),
        (1, Stage::Staging, false, reader, Denied),
        (1, Stage::Production, false, stager, Denied),
        (1, Stage::None, true, reader, Denied),
    ];
    for (version, stage, archive, who, expected) in before_staging {
        assert_eq!(
            refused(version, stage, archive, who).await,
            expected,
            "{} moving version {version} to {stage:?}",
            who.name
        );
    }
    let staged = transition(1, Stage::Staging, false, stager)
        .await
        .expect("staging managers stage");
    assert_eq!(staged.current_stage, Stage::Staging);
    // Archiving what is in Production needs the Production level, even from Staging.
    assert_eq!(refused(1, Stage::Production, true, stager).await, Denied);
    transition(1, Stage::Production, true, producer)
        .await
        .expect("production managers promote");
    assert_eq!(refused(1, Stage::Archived, false, stager).await, Denied);
    // Refusals changed nothing; the one applied transitions are recorded as their principals'.
    let version = store.get_model_version("dev", "m", 1).await.expect("get");
    assert_eq!(version.current_stage, Stage::Production);
    let applied: Vec<(String, Option<Stage>)> = store
        .activities("dev", "m", 1)
        .await
        .expect("activities")
        .into_iter()
        .filter(|a| a.activity_type == ActivityType::AppliedTransition)
        .map(|a| (a.user_id, a.to_stage))
        .collect();
    assert_eq!(
        applied,
        vec![
            ("stager".to_string(), Some(Stage::Staging)),
            ("producer".to_string(), Some(Stage::Production)),
        ]
    );
}

pub async fn registry_search_filters_pages_and_grants(store: Store) {
    let actor = setup(&store).await;
    let reader = store
        .create_principal("reader", PrincipalKind::User, false, None, "tester")
        .await
        .expect("reader");
    for (name, team) in [("alpha", "a"), ("beta", "a"), ("gamma", "b")] {
        let tags = [KeyValue {
            key: "team".into(),
            value: team.into(),
        }];
        store
            .create_registered_model("dev", name, "", &tags, &actor)
            .await
            .expect("create");
        store
            .create_model_version("dev", &version(name, name), &actor)
            .await
            .expect("version");
    }
    let prompt_tag = [KeyValue {
        key: "mlflow.prompt.is_prompt".into(),
        value: "true".into(),
    }];
    store
        .create_registered_model("dev", "a-prompt", "", &prompt_tag, &actor)
        .await
        .expect("prompt");
    let names = |page: Vec<tarn_core::registry::RegisteredModel>| {
        page.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    let all = store
        .search_registered_models("dev", &query(vec![]))
        .await
        .expect("search");
    assert_eq!(
        names(all.items),
        vec!["alpha", "beta", "gamma"],
        "prompts are excluded unless asked for"
    );
    let prompts = store
        .search_registered_models(
            "dev",
            &query(vec![tag_eq("mlflow.prompt.is_prompt", "true")]),
        )
        .await
        .expect("prompts");
    assert_eq!(names(prompts.items), vec!["a-prompt"]);
    let team_a = store
        .search_registered_models("dev", &query(vec![tag_eq("team", "a")]))
        .await
        .expect("team a");
    assert_eq!(names(team_a.items), vec!["alpha", "beta"]);
    let not_a = store
        .search_registered_models(
            "dev",
            &query(vec![Comparison {
                comparator: Comparator::Ne,
                ..tag_eq("team", "a")
            }]),
        )
        .await
        .expect("team != a");
    assert_eq!(names(not_a.items), vec!["gamma"]);
    let mut paged = query(vec![]);
    paged.max_results = 2;
    paged.order_by = vec![OrderBy {
        entity: Entity::Attribute,
        key: "name".into(),
        ascending: false,
    }];
    let first = store
        .search_registered_models("dev", &paged)
        .await
        .expect("page 1");
    assert_eq!(
        (names(first.items), first.next_offset),
        (vec!["gamma".into(), "beta".into()], Some(2))
    );
    paged.offset = 2;
    let second = store
        .search_registered_models("dev", &paged)
        .await
        .expect("page 2");
    assert_eq!(
        (names(second.items), second.next_offset),
        (vec!["alpha".to_string()], None)
    );

    let injection = store
        .search_registered_models(
            "dev",
            &query(vec![Comparison {
                entity: Entity::Attribute,
                key: "name".into(),
                comparator: Comparator::Eq,
                value: Value::Str("x' OR '1'='1".into()),
            }]),
        )
        .await
        .expect("a value stays a value");
    assert!(injection.items.is_empty());

    let versions = store
        .search_model_versions(
            "dev",
            &query(vec![Comparison {
                entity: Entity::Attribute,
                key: "run_id".into(),
                comparator: Comparator::In,
                value: Value::List(vec!["run-alpha".into(), "run-gamma".into()]),
            }]),
        )
        .await
        .expect("versions by run");
    assert_eq!(
        versions
            .items
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["alpha", "gamma"]
    );

    // A reader sees only what it was granted.
    let mut readable = query(vec![]);
    readable.readable_by = Some(ReadableBy {
        grantee_ids: vec![reader.id],
    });
    assert!(
        store
            .search_registered_models("dev", &readable)
            .await
            .expect("none")
            .items
            .is_empty()
    );
    let beta_id = store.registered_model_id("dev", "beta").await.expect("id");
    store
        .update_grants(
            "dev",
            ObjectType::RegisteredModel,
            &beta_id,
            &[("reader".into(), PermissionLevel::CanRead)],
            &actor,
        )
        .await
        .expect("grant");
    assert_eq!(
        names(
            store
                .search_registered_models("dev", &readable)
                .await
                .expect("beta")
                .items
        ),
        vec!["beta"]
    );
    assert_eq!(
        store
            .search_model_versions("dev", &readable)
            .await
            .expect("beta's versions")
            .items
            .len(),
        1
    );
}

pub async fn every_change_is_an_event(store: Store) {
    let actor = setup(&store).await;
    let owner = principal_of(&actor);
    store
        .create_registered_model("dev", "m", "", &[], &actor)
        .await
        .expect("create");
    store
        .create_model_version("dev", &version("m", "a"), &actor)
        .await
        .expect("version");
    store
        .transition_stage("dev", "m", 1, Stage::Staging, false, "", &owner)
        .await
        .expect("stage");
    store
        .set_alias("dev", "m", "champion", 1, &actor)
        .await
        .expect("alias");
    let model_id = store.registered_model_id("dev", "m").await.expect("id");
    store
        .update_grants(
            "dev",
            ObjectType::RegisteredModel,
            &model_id,
            &[("owner".into(), PermissionLevel::CanRead)],
            &actor,
        )
        .await
        .expect("grant");
    // A failed change records nothing.
    store
        .create_registered_model("dev", "m", "", &[], &actor)
        .await
        .expect_err("duplicate");
    // The workspace's own creation and members are in its trail too; the registry's follow.
    let events: Vec<_> = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .into_iter()
        .skip_while(|e| {
            matches!(
                e.change,
                Change::WorkspaceCreated { .. } | Change::WorkspaceMemberAdded { .. }
            )
        })
        .collect();
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let stored = e.change.store().expect("stored");
            (stored.entity, stored.action)
        })
        .collect();
    let expected = [
        ("registered_model", "created"),
        ("model_version", "created"),
        ("model_version_stage", "transitioned"),
        ("model_version_alias", "created"),
        ("permissions", "updated"),
    ];
    assert_eq!(
        kinds,
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(events.iter().all(|e| e.actor == "owner"));
    assert!(matches!(
        &events[2].change,
        Change::StageTransitioned { name, version: 1, to_stage: Stage::Staging, .. } if name == "m"
    ));
    assert!(matches!(
        &events[1].change,
        Change::VersionCreated { version: 1, .. }
    ));
    // Stored as MLflow's webhook payloads have them: versions as text.
    let stored = events[1].change.store().expect("stored");
    assert_eq!(stored.data["version"], "1");
    let after = store
        .events(&EventQuery {
            after_id: events[2].id,
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("after");
    assert_eq!(after.len(), 2);
}

pub async fn transition_requests_and_comments(store: Store) {
    let actor = setup(&store).await;
    let owner = principal_of(&actor);
    let reviewer = Actor {
        id: actor.id,
        name: "reviewer".into(),
    };
    store
        .create_registered_model("dev", "m", "", &[], &actor)
        .await
        .expect("create");
    for location in ["a", "b"] {
        store
            .create_model_version("dev", &version("m", location), &actor)
            .await
            .expect("version");
    }
    store
        .transition_stage("dev", "m", 1, Stage::Production, false, "first", &owner)
        .await
        .expect("v1 to production");

    let request = store
        .create_transition_request("dev", "m", 2, Stage::Production, "ready", &actor)
        .await
        .expect("request");
    assert_eq!(
        (request.activity_type, request.to_stage, request.open),
        (
            ActivityType::RequestedTransition,
            Some(Stage::Production),
            true
        )
    );
    let duplicate = store
        .create_transition_request("dev", "m", 2, Stage::Production, "again", &actor)
        .await
        .expect_err("one open request per requester and stage");
    assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
    store
        .create_transition_request("dev", "m", 2, Stage::Staging, "or staging", &reviewer)
        .await
        .expect("second request");
    assert_eq!(
        store
            .open_transition_requests("dev", "m", 2)
            .await
            .expect("open")
            .len(),
        2
    );
    let nothing_to_reject = store
        .resolve_transition_request(
            "dev",
            "m",
            2,
            Stage::Archived,
            RequestOutcome::Reject,
            None,
            "",
            &reviewer,
        )
        .await
        .expect_err("no request to Archived");
    assert_eq!(nothing_to_reject.code, ErrorCode::ResourceDoesNotExist);

    let approved = store
        .resolve_transition_request(
            "dev",
            "m",
            2,
            Stage::Production,
            RequestOutcome::Approve {
                archive_existing: true,
            },
            None,
            "looks good",
            &reviewer,
        )
        .await
        .expect("approve");
    assert_eq!(approved.activity_type, ActivityType::ApprovedRequest);
    assert_eq!(
        store
            .get_model_version("dev", "m", 2)
            .await
            .expect("v2")
            .current_stage,
        Stage::Production
    );
    assert_eq!(
        store
            .get_model_version("dev", "m", 1)
            .await
            .expect("v1")
            .current_stage,
        Stage::Archived
    );
    store
        .resolve_transition_request(
            "dev",
            "m",
            2,
            Stage::Staging,
            RequestOutcome::Cancel,
            Some("owner"),
            "",
            &actor,
        )
        .await
        .expect_err("owner has no open request to Staging");
    store
        .resolve_transition_request(
            "dev",
            "m",
            2,
            Stage::Staging,
            RequestOutcome::Cancel,
            Some("reviewer"),
            "",
            &reviewer,
        )
        .await
        .expect("cancel own");
    assert!(
        store
            .open_transition_requests("dev", "m", 2)
            .await
            .expect("none open")
            .is_empty()
    );

    let comment = store
        .create_comment("dev", "m", 2, "shipping it", &reviewer)
        .await
        .expect("comment");
    let edited = store
        .update_comment("dev", comment.id, "shipped", &reviewer)
        .await
        .expect("edit");
    assert_eq!(
        (
            edited.comment.as_str(),
            edited.model_name.as_str(),
            edited.version
        ),
        ("shipped", "m", 2)
    );
    assert_eq!(
        store
            .get_comment("prod", comment.id)
            .await
            .expect_err("comments belong to a workspace")
            .code,
        ErrorCode::ResourceDoesNotExist
    );

    let history: Vec<ActivityType> = store
        .activities("dev", "m", 2)
        .await
        .expect("activities")
        .iter()
        .map(|a| a.activity_type)
        .collect();
    assert_eq!(
        history,
        vec![
            ActivityType::RequestedTransition,
            ActivityType::RequestedTransition,
            ActivityType::ApprovedRequest,
            ActivityType::CancelledRequest,
            ActivityType::NewComment,
        ]
    );
    let archived = store.activities("dev", "m", 1).await.expect("v1 history");
    let last = archived.last().expect("system transition");
    assert_eq!(
        (last.activity_type, last.from_stage, last.to_stage),
        (
            ActivityType::SystemTransition,
            Some(Stage::Production),
            Some(Stage::Archived)
        )
    );
    store
        .delete_comment("dev", comment.id, &reviewer)
        .await
        .expect("delete comment");
    assert_eq!(
        store.activities("dev", "m", 2).await.expect("after").len(),
        4
    );
}

pub async fn webhook_outbox_is_at_least_once(store: Store) {
    use tarn_core::store::{AttemptOutcome, AttemptResult, DeliveryQuery};
    use tarn_core::webhooks::{Flavor, Webhook, WebhookStatus};

    let actor = setup(&store).await;
    store
        .create_registered_model("dev", "before", "", &[], &actor)
        .await
        .expect("model before the webhook");
    let webhook = Webhook {
        id: "hook1".into(),
        workspace: "dev".into(),
        flavor: Flavor::Mlflow,
        name: "h".into(),
        description: String::new(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: Some("s".into()),
        authorization: None,
        enable_ssl_verification: true,
        model_name: None,
        events: vec!["registered_model.created".into()],
        status: WebhookStatus::Active,
        creation_timestamp: 1,
        last_updated_timestamp: 1,
    };
    store
        .create_webhook(&webhook, &actor)
        .await
        .expect("webhook");
    for name in ["a", "b"] {
        store
            .create_registered_model("dev", name, "", &[], &actor)
            .await
            .expect("model");
    }
    store
        .create_registered_model("prod", "elsewhere", "", &[], &actor)
        .await
        .expect("other workspace");
    assert!(store.fan_out(100, 1000).await.expect("fan out") >= 3);
    assert_eq!(store.fan_out(100, 1000).await.expect("nothing new"), 0);

    let claimed = store
        .claim_deliveries(1000, 61_000, 10)
        .await
        .expect("claim");
    let names: Vec<String> = claimed
        .iter()
        .map(|(d, _)| {
            let body: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
            body["data"]["name"].as_str().expect("name").to_string()
        })
        .collect();
    assert_eq!(
        names,
        vec!["a", "b"],
        "not the model created before the webhook, not prod's"
    );
    // Leased: a second dispatcher (or the same after a crash) does not take them before the lease ends.
    assert!(
        store
            .claim_deliveries(2000, 62_000, 10)
            .await
            .expect("leased")
            .is_empty()
    );
    let (first, _) = &claimed[0];
    let (second, _) = &claimed[1];
    store
        .record_attempt(
            first.id,
            &AttemptResult {
                status_code: Some(200),
                error: None,
                latency_ms: 3,
                outcome: AttemptOutcome::Delivered,
            },
            2000,
        )
        .await
        .expect("delivered");
    store
        .record_attempt(
            second.id,
            &AttemptResult {
                status_code: Some(503),
                error: Some("busy".into()),
                latency_ms: 4,
                outcome: AttemptOutcome::RetryAt(5000),
            },
            2000,
        )
        .await
        .expect("retry");
    assert!(
        store
            .claim_deliveries(4999, 70_000, 10)
            .await
            .expect("not yet")
            .is_empty()
    );
    let again = store.claim_deliveries(5000, 70_000, 10).await.expect("due");
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].0.delivery_id, second.delivery_id,
        "a retry keeps its delivery id"
    );
    assert_eq!(again[0].0.attempts, 1);
    // A lease that runs out (the dispatcher died mid-send) makes the delivery due again.
    let after_crash = store
        .claim_deliveries(70_000, 130_000, 10)
        .await
        .expect("expired lease");
    assert_eq!(after_crash.len(), 1);
    let log = store
        .deliveries(&DeliveryQuery {
            workspace: "dev".into(),
            webhook_id: Some("hook1".into()),
            status: None,
            limit: 10,
        })
        .await
        .expect("log");
    assert_eq!(
        log.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(),
        vec!["pending", "succeeded"]
    );
    assert_eq!(log[0].last_status_code, Some(503));
    store
        .delete_webhook("dev", "hook1", &actor)
        .await
        .expect("delete");
    assert!(
        store
            .deliveries(&DeliveryQuery {
                workspace: "dev".into(),
                webhook_id: None,
                status: None,
                limit: 10,
            })
            .await
            .expect("log")
            .is_empty()
    );
}

/// A webhook in `dev` that asks for every registered model created after it.
pub async fn model_created_hook(store: &Store, actor: &Actor) {
    use tarn_core::webhooks::{Flavor, Webhook, WebhookStatus};
    let webhook = Webhook {
        id: "every-model".into(),
        workspace: "dev".into(),
        flavor: Flavor::Mlflow,
        name: "every model".into(),
        description: String::new(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: None,
        authorization: None,
        enable_ssl_verification: true,
        model_name: None,
        events: vec!["registered_model.created".into()],
        status: WebhookStatus::Active,
        creation_timestamp: 1,
        last_updated_timestamp: 1,
    };
    store
        .create_webhook(&webhook, actor)
        .await
        .expect("webhook");
}

/// The names of the models whose creation the webhook of `model_created_hook` was sent, sorted.
pub async fn delivered_model_names(store: &Store) -> Vec<String> {
    let log = store
        .deliveries(&tarn_core::store::DeliveryQuery {
            workspace: "dev".into(),
            webhook_id: Some("every-model".into()),
            status: None,
            limit: 100_000,
        })
        .await
        .expect("deliveries");
    let mut names: Vec<String> = log
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
            body["data"]["name"].as_str().expect("name").to_string()
        })
        .collect();
    names.sort();
    names
}

/// Eight writers create models while two dispatchers fan out in small batches: every event
/// committed gets exactly one delivery, whatever order the transactions commit in.
pub async fn every_committed_event_is_fanned_out_once(store: Store) {
    let actor = setup(&store).await;
    model_created_hook(&store, &actor).await;
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let dispatcher = |store: Store| {
        let writing = writing.clone();
        tokio::spawn(async move {
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                store.fan_out(7, 1000).await.expect("fan out");
                tokio::task::yield_now().await;
            }
        })
    };
    let dispatchers = [dispatcher(store.clone()), dispatcher(store.clone())];
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (store, actor) = (store.clone(), actor.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    store
                        .create_registered_model(
                            "dev",
                            &format!("m{writer}-{i:02}"),
                            "",
                            &[],
                            &actor,
                        )
                        .await
                        .expect("model");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    for dispatcher in dispatchers {
        dispatcher.await.expect("dispatcher");
    }
    while store.fan_out(100, 1000).await.expect("drain") > 0 {}
    let mut expected: Vec<String> = (0..8)
        .flat_map(|writer| (0..40).map(move |i| format!("m{writer}-{i:02}")))
        .collect();
    expected.sort();
    assert_eq!(delivered_model_names(&store).await, expected);
}

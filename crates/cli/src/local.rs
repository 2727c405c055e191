//! Whom local commands act as: the data directory's authority, named in the audit trail.

/// Offline commands act with the data directory's authority (an admin's); the audit trail
/// names them so.
pub(crate) fn cli_principal() -> tarn_core::auth::Principal {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    tarn_core::auth::Principal {
        id: 0,
        name: format!("cli:{user}"),
        kind: tarn_core::auth::PrincipalKind::User,
        is_admin: true,
        group_ids: Vec::new(),
        only_workspace: None,
    }
}

pub(crate) fn cli_actor() -> tarn_core::registry::Actor {
    tarn_core::registry::Actor::from(&cli_principal())
}

/// Local lakehouse commands act as an admin working in `workspace`.
pub(crate) fn cli_caller(workspace: String) -> tarn_core::caller::Caller {
    tarn_core::caller::Caller::new(workspace, cli_principal())
}

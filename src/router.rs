//! The whole URL surface: one match from (method, path segments) to a `Route`.
//!
//! Version prefixes, doubled and trailing slashes are already gone (see `http::Req::new`).

use crate::error::ApiError;

/// Every route ingot serves. Path parameters are carried as written (a user may be named by
/// id or by username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Jwks,
    RequestSigningKey,
    OpenApi,
    Session,
    CreateUser,
    CreateUsersBatch,
    ListUsers,
    GetUser(String),
    UpdateUser(String),
    DeleteUser(String),
    UserToken(String),
    DeactivateUserWorkflows(String),
    DeleteUserLogs(String),
    CreateCredentialHeadless,
    CreateUserCredential(String),
    ListUserCredentials(String),
    DeleteUserCredential(String, String),
    ListIntegrations,
    CreateIntegration,
    GetIntegration(String),
    DeleteIntegration(String),
    InstallIntegration(String, String),
    ListWorkflows,
    GetWorkflow(String),
    DeleteWorkflow(String),
    ActivateWorkflow,
    DeactivateWorkflow,
    WorkflowUsers(String),
    WorkflowLogs(String),
    WorkflowErrors(String),
    RerunExecution(String, String),
    RunWorkflow,
    RunEvent,
    ListLogs,
    GetWebhook,
    PutWebhook,
    RotateWebhookSecret,
    GetEventBridge,
    PutEventBridge,
    ListDeliveries,
    RetryDelivery(String),
    ListCredentials,
    WorkflowVersions(String),
    UpgradeWorkflow(String),
    WorkflowAnalytics(String),
    CredentialTypes,
    CredentialTypeForApp(String),
    Apps,
    Events,
    InstallUrl(String, String),
    RedeemInstallLink,
    StartInstallation,
    CompleteInstallation,
    OAuthUrl,
    UserOAuthUrl(String, String),
    OAuthCallback,
    EmbeddedJs,
    AlloyFrontendJs,
    Asset(String),
    FramedPage,
    HostedInstallPage,
    ConsolePage,
    ConsoleSession,
    Stats,
    TestDelivery(String),
    IntegrationVersions(String),
    AdminBackup,
    Readyz,
}

/// Who may call a route; checked once, in `handlers::dispatch`, before its handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    None,
    /// Server-to-server: an API key.
    ApiKey,
    /// An API key, or the embedded modal's user token (scoped to its user).
    KeyOrUserToken,
    /// A user token only.
    UserToken,
}

impl Route {
    /// The auth this route takes.
    pub fn auth(&self) -> Auth {
        use Route::*;
        match self {
            Healthz | Readyz | Jwks | RequestSigningKey | OpenApi => Auth::None,
            Session => Auth::UserToken,
            CreateUser
            | CreateUsersBatch
            | ListUsers
            | GetUser(_)
            | UpdateUser(_)
            | DeleteUser(_)
            | UserToken(_)
            | DeactivateUserWorkflows(_)
            | DeleteUserLogs(_) => Auth::ApiKey,
            CreateCredentialHeadless | CreateUserCredential(_) | ListUserCredentials(_) | DeleteUserCredential(..) => {
                Auth::KeyOrUserToken
            }
            CreateIntegration | DeleteIntegration(_) => Auth::ApiKey,
            ListIntegrations | GetIntegration(_) | InstallIntegration(..) => Auth::KeyOrUserToken,
            ListWorkflows | GetWorkflow(_) | ActivateWorkflow | DeactivateWorkflow => Auth::KeyOrUserToken,
            DeleteWorkflow(_) | WorkflowUsers(_) => Auth::ApiKey,
            WorkflowLogs(_) | WorkflowErrors(_) => Auth::KeyOrUserToken,
            RerunExecution(..) | RunWorkflow | RunEvent | ListLogs => Auth::ApiKey,
            GetWebhook | PutWebhook | RotateWebhookSecret | GetEventBridge | PutEventBridge | ListDeliveries
            | RetryDelivery(_) => Auth::ApiKey,
            ListCredentials | WorkflowVersions(_) | UpgradeWorkflow(_) => Auth::KeyOrUserToken,
            WorkflowAnalytics(_) => Auth::ApiKey,
            CredentialTypes | CredentialTypeForApp(_) | Apps | Events => Auth::KeyOrUserToken,
            InstallUrl(..) => Auth::ApiKey,
            RedeemInstallLink => Auth::None,
            StartInstallation | CompleteInstallation => Auth::KeyOrUserToken,
            OAuthUrl | UserOAuthUrl(..) => Auth::KeyOrUserToken,
            OAuthCallback => Auth::None,
            EmbeddedJs | AlloyFrontendJs | Asset(_) | FramedPage | HostedInstallPage => Auth::None,
            // The console's session route reads its own cookie.
            ConsolePage | ConsoleSession => Auth::None,
            Stats | TestDelivery(_) | IntegrationVersions(_) | AdminBackup => Auth::ApiKey,
        }
    }
}

/// Maps a request to its route: `404` for an unknown path, `405` for a known path with
/// another method.
pub fn route(method: &str, segments: &[String]) -> Result<Route, ApiError> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |s: &str| s.to_string();
    let (allow, found): (&'static str, Option<Route>) = match segs.as_slice() {
        ["healthz"] => ("GET", (method == "GET").then_some(Route::Healthz)),
        ["readyz"] => ("GET", (method == "GET").then_some(Route::Readyz)),
        ["openapi.json"] => ("GET", (method == "GET").then_some(Route::OpenApi)),
        ["embedded.js"] => ("GET", (method == "GET").then_some(Route::EmbeddedJs)),
        ["alloy-frontend.js"] => ("GET", (method == "GET").then_some(Route::AlloyFrontendJs)),
        ["assets", name] => ("GET", (method == "GET").then(|| Route::Asset(owned(name)))),
        ["forge-install"] | ["authenticate-app"] => ("GET", (method == "GET").then_some(Route::FramedPage)),
        ["console"] => ("GET", (method == "GET").then_some(Route::ConsolePage)),
        ["console", "session"] => (
            "GET, POST, DELETE",
            matches!(method, "GET" | "POST" | "DELETE").then_some(Route::ConsoleSession),
        ),
        ["stats"] => ("GET", (method == "GET").then_some(Route::Stats)),
        ["admin", "backup"] => ("POST", (method == "POST").then_some(Route::AdminBackup)),
        ["settings", "logging", target @ ("webhook" | "eventbridge"), "test"] => (
            "POST",
            (method == "POST").then(|| Route::TestDelivery(target.to_string())),
        ),
        ["embedded-install"] => ("GET", (method == "GET").then_some(Route::HostedInstallPage)),
        [".well-known", "jwks.json"] => ("GET", (method == "GET").then_some(Route::Jwks)),
        ["security", "alloy_public_key.pem"] => ("GET", (method == "GET").then_some(Route::RequestSigningKey)),
        ["session"] => ("GET", (method == "GET").then_some(Route::Session)),
        ["users"] => (
            "GET, POST",
            match method {
                "GET" => Some(Route::ListUsers),
                "POST" => Some(Route::CreateUser),
                _ => None,
            },
        ),
        ["users", "batch"] if method == "POST" => ("POST", Some(Route::CreateUsersBatch)),
        ["users", user] => (
            "GET, PUT, PATCH, DELETE",
            match method {
                "GET" => Some(Route::GetUser(owned(user))),
                "PUT" | "PATCH" => Some(Route::UpdateUser(owned(user))),
                "DELETE" => Some(Route::DeleteUser(owned(user))),
                _ => None,
            },
        ),
        ["users", user, "token"] => ("GET", (method == "GET").then(|| Route::UserToken(owned(user)))),
        ["users", user, "deactivate-workflows"] => (
            "PUT",
            (method == "PUT").then(|| Route::DeactivateUserWorkflows(owned(user))),
        ),
        ["users", user, "logs"] => (
            "DELETE",
            (method == "DELETE").then(|| Route::DeleteUserLogs(owned(user))),
        ),
        ["users", user, "credentials"] => (
            "GET, POST",
            match method {
                "GET" => Some(Route::ListUserCredentials(owned(user))),
                "POST" => Some(Route::CreateUserCredential(owned(user))),
                _ => None,
            },
        ),
        ["users", user, "credentials", id] => (
            "GET, DELETE",
            match method {
                "GET" => Some(Route::UserOAuthUrl(owned(user), owned(id))),
                "DELETE" => Some(Route::DeleteUserCredential(owned(user), owned(id))),
                _ => None,
            },
        ),
        ["credentials", "users", user] => (
            "GET",
            (method == "GET").then(|| Route::ListUserCredentials(owned(user))),
        ),
        ["credentials"] => ("GET", (method == "GET").then_some(Route::ListCredentials)),
        ["credentials", app] => (
            "GET",
            (method == "GET").then(|| Route::CredentialTypeForApp(owned(app))),
        ),
        ["metadata", "credentials"] => ("GET", (method == "GET").then_some(Route::CredentialTypes)),
        ["metadata", "credentials", app] => (
            "GET",
            (method == "GET").then(|| Route::CredentialTypeForApp(owned(app))),
        ),
        ["metadata", "apps"] | ["apps"] => ("GET", (method == "GET").then_some(Route::Apps)),
        ["events"] => ("GET", (method == "GET").then_some(Route::Events)),
        ["one", ..] => {
            return Err(ApiError::NotFound(
                "ingot does not offer the Unified API (/one/...); see docs/API.md for what it serves".into(),
            ))
        }
        ["headless", "credentials"] => ("POST", (method == "POST").then_some(Route::CreateCredentialHeadless)),
        ["integrations"] => (
            "GET, POST",
            match method {
                "GET" => Some(Route::ListIntegrations),
                "POST" => Some(Route::CreateIntegration),
                _ => None,
            },
        ),
        ["integrations", id] => (
            "GET, DELETE",
            match method {
                "GET" => Some(Route::GetIntegration(owned(id))),
                "DELETE" => Some(Route::DeleteIntegration(owned(id))),
                _ => None,
            },
        ),
        ["integrations", id, "versions"] => ("GET", (method == "GET").then(|| Route::IntegrationVersions(owned(id)))),
        ["users", user, "integrations", id, "install"] => (
            "POST",
            (method == "POST").then(|| Route::InstallIntegration(owned(user), owned(id))),
        ),
        ["users", user, "integrations", id, "install-url"] => (
            "GET",
            (method == "GET").then(|| Route::InstallUrl(owned(user), owned(id))),
        ),
        ["install-links", "redeem"] => ("POST", (method == "POST").then_some(Route::RedeemInstallLink)),
        ["headless", "oauthUrl"] => ("GET", (method == "GET").then_some(Route::OAuthUrl)),
        ["oauth", "callback"] => ("GET", (method == "GET").then_some(Route::OAuthCallback)),
        ["headless", "startInstallation"] => ("POST", (method == "POST").then_some(Route::StartInstallation)),
        ["headless", "completeInstallation"] => ("POST", (method == "POST").then_some(Route::CompleteInstallation)),
        ["workflows"] => ("GET", (method == "GET").then_some(Route::ListWorkflows)),
        ["workflows", "activate"] if method == "PUT" => ("PUT", Some(Route::ActivateWorkflow)),
        ["workflows", "deactivate"] if method == "PUT" => ("PUT", Some(Route::DeactivateWorkflow)),
        ["workflows", id] => (
            "GET, DELETE",
            match method {
                "GET" => Some(Route::GetWorkflow(owned(id))),
                "DELETE" => Some(Route::DeleteWorkflow(owned(id))),
                _ => None,
            },
        ),
        ["workflows", id, "versions"] => ("GET", (method == "GET").then(|| Route::WorkflowVersions(owned(id)))),
        ["workflows", id, "upgrade"] => ("PUT", (method == "PUT").then(|| Route::UpgradeWorkflow(owned(id)))),
        ["workflows", id, "analytics"] => ("GET", (method == "GET").then(|| Route::WorkflowAnalytics(owned(id)))),
        ["workflows", id, "users"] => ("GET", (method == "GET").then(|| Route::WorkflowUsers(owned(id)))),
        ["workflows", id, "logs"] => ("GET", (method == "GET").then(|| Route::WorkflowLogs(owned(id)))),
        ["workflows", id, "errors"] => ("GET", (method == "GET").then(|| Route::WorkflowErrors(owned(id)))),
        ["workflows", id, "rerun", ex] => (
            "POST",
            (method == "POST").then(|| Route::RerunExecution(owned(id), owned(ex))),
        ),
        ["run", "workflow"] => ("POST", (method == "POST").then_some(Route::RunWorkflow)),
        ["run", "event"] => ("POST", (method == "POST").then_some(Route::RunEvent)),
        ["logs"] => ("GET", (method == "GET").then_some(Route::ListLogs)),
        ["settings", "logging", "webhook"] => (
            "GET, PUT",
            match method {
                "GET" => Some(Route::GetWebhook),
                "PUT" => Some(Route::PutWebhook),
                _ => None,
            },
        ),
        ["settings", "logging", "webhook", "rotate-secret"] => {
            ("POST", (method == "POST").then_some(Route::RotateWebhookSecret))
        }
        ["settings", "logging", "eventbridge"] => (
            "GET, PUT",
            match method {
                "GET" => Some(Route::GetEventBridge),
                "PUT" => Some(Route::PutEventBridge),
                _ => None,
            },
        ),
        ["settings", "logging", "deliveries"] => ("GET", (method == "GET").then_some(Route::ListDeliveries)),
        ["settings", "logging", "deliveries", id, "retry"] => {
            ("POST", (method == "POST").then(|| Route::RetryDelivery(owned(id))))
        }
        _ => return Err(ApiError::NotFound(format!("no route for {method} /{}", segs.join("/")))),
    };
    found.ok_or(ApiError::MethodNotAllowed(allow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Req;

    fn r(method: &str, target: &str) -> Result<Route, u16> {
        let req = Req::new(method, target);
        route(&req.method, &req.segments).map_err(|e| e.status())
    }

    #[test]
    fn users_routes_resolve_bare_and_versioned() {
        assert_eq!(r("POST", "/users"), Ok(Route::CreateUser));
        assert_eq!(r("POST", "/2024-03/users/"), Ok(Route::CreateUser));
        assert_eq!(r("GET", "/2023-01//users"), Ok(Route::ListUsers));
        assert_eq!(r("POST", "/users/batch"), Ok(Route::CreateUsersBatch));
        assert_eq!(r("GET", "/users/u1"), Ok(Route::GetUser("u1".into())));
        assert_eq!(r("PATCH", "/users/u1"), Ok(Route::UpdateUser("u1".into())));
        assert_eq!(r("PUT", "/users/u1"), Ok(Route::UpdateUser("u1".into())));
        assert_eq!(r("DELETE", "/users/u1"), Ok(Route::DeleteUser("u1".into())));
        assert_eq!(r("GET", "/2024-03/users/u1/token"), Ok(Route::UserToken("u1".into())));
        assert_eq!(
            r("PUT", "/users/u1/deactivate-workflows"),
            Ok(Route::DeactivateUserWorkflows("u1".into()))
        );
        assert_eq!(r("DELETE", "/users/u1/logs"), Ok(Route::DeleteUserLogs("u1".into())));
    }

    #[test]
    fn a_user_named_batch_is_still_reachable_by_get() {
        assert_eq!(r("GET", "/users/batch"), Ok(Route::GetUser("batch".into())));
    }

    #[test]
    fn the_request_signing_key_is_served_without_auth() {
        let route = r("GET", "/security/alloy_public_key.pem").unwrap();
        assert_eq!(route, Route::RequestSigningKey);
        assert_eq!(route.auth(), Auth::None);
        assert_eq!(r("POST", "/security/alloy_public_key.pem"), Err(405));
    }

    #[test]
    fn credentials_routes_resolve() {
        assert_eq!(r("POST", "/headless/credentials"), Ok(Route::CreateCredentialHeadless));
        assert_eq!(
            r("POST", "/users/u1/credentials"),
            Ok(Route::CreateUserCredential("u1".into()))
        );
        assert_eq!(
            r("GET", "/users/u1/credentials"),
            Ok(Route::ListUserCredentials("u1".into()))
        );
        assert_eq!(
            r("GET", "/credentials/users/u1"),
            Ok(Route::ListUserCredentials("u1".into()))
        );
        assert_eq!(
            r("DELETE", "/users/u1/credentials/c1"),
            Ok(Route::DeleteUserCredential("u1".into(), "c1".into()))
        );
    }

    #[test]
    fn workflow_routes_resolve() {
        assert_eq!(r("GET", "/integrations"), Ok(Route::ListIntegrations));
        assert_eq!(r("POST", "/2024-03/integrations/"), Ok(Route::CreateIntegration));
        assert_eq!(
            r("DELETE", "/integrations/i1"),
            Ok(Route::DeleteIntegration("i1".into()))
        );
        assert_eq!(
            r("POST", "/users/u1/integrations/i1/install"),
            Ok(Route::InstallIntegration("u1".into(), "i1".into()))
        );
        assert_eq!(r("GET", "/workflows?userId=u1"), Ok(Route::ListWorkflows));
        assert_eq!(r("PUT", "/workflows/activate"), Ok(Route::ActivateWorkflow));
        assert_eq!(r("PUT", "/workflows/deactivate"), Ok(Route::DeactivateWorkflow));
        assert_eq!(r("GET", "/workflows/w1"), Ok(Route::GetWorkflow("w1".into())));
        assert_eq!(r("DELETE", "/workflows/w1"), Ok(Route::DeleteWorkflow("w1".into())));
        assert_eq!(r("GET", "/workflows/w1/users"), Ok(Route::WorkflowUsers("w1".into())));
        assert_eq!(r("GET", "/workflows/w1/logs"), Ok(Route::WorkflowLogs("w1".into())));
        assert_eq!(r("GET", "/workflows/w1/errors"), Ok(Route::WorkflowErrors("w1".into())));
        assert_eq!(
            r("POST", "/workflows/w1/rerun/e1"),
            Ok(Route::RerunExecution("w1".into(), "e1".into()))
        );
        assert_eq!(r("POST", "/run/workflow"), Ok(Route::RunWorkflow));
        assert_eq!(r("POST", "/run/event"), Ok(Route::RunEvent));
        assert_eq!(r("GET", "/logs"), Ok(Route::ListLogs));
        assert_eq!(r("PUT", "/settings/logging/webhook"), Ok(Route::PutWebhook));
        assert_eq!(
            r("POST", "/settings/logging/webhook/rotate-secret"),
            Ok(Route::RotateWebhookSecret)
        );
        assert_eq!(
            r("GET", "/2024-03/settings/logging/eventbridge"),
            Ok(Route::GetEventBridge)
        );
        assert_eq!(r("GET", "/settings/logging/deliveries"), Ok(Route::ListDeliveries));
        assert_eq!(
            r("POST", "/settings/logging/deliveries/d1/retry"),
            Ok(Route::RetryDelivery("d1".into()))
        );
        assert_eq!(r("PUT", "/workflows/w1"), Err(405));
        assert_eq!(r("GET", "/run/workflow"), Err(405));
    }

    /// The variants of `Route`, read from this file's source.
    fn variants() -> Vec<String> {
        let src = include_str!("router.rs");
        let body = &src[src.find("pub enum Route {").unwrap()..];
        let body = &body[..body.find("\n}").unwrap()];
        body.lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| l.split(['(', ',']).next().unwrap().to_string())
            .collect()
    }

    fn variant_of(r: &Route) -> String {
        format!("{r:?}").split('(').next().unwrap().to_string()
    }

    /// Every operation of docs/openapi.json routes here, and every route is in the document.
    #[test]
    fn the_openapi_document_and_the_router_name_the_same_routes() {
        let doc: serde_json::Value = serde_json::from_str(crate::handlers::session::OPENAPI).unwrap();
        let mut reached = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let concrete = path.replace('{', "x").replace('}', "");
                let found = r(&method.to_uppercase(), &concrete)
                    .unwrap_or_else(|s| panic!("{method} {path} is in the document but routes to {s}"));
                reached.insert(variant_of(&found));
            }
        }
        let all: std::collections::BTreeSet<String> = variants().into_iter().collect();
        assert!(all.len() > 50, "{all:?}");
        let missing: Vec<&String> = all.difference(&reached).collect();
        assert!(missing.is_empty(), "routes missing from docs/openapi.json: {missing:?}");
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(r("GET", "/nope"), Err(404));
        assert_eq!(r("GET", "/users/u1/token/extra"), Err(404));
        assert_eq!(r("DELETE", "/users"), Err(405));
        assert_eq!(r("POST", "/users/u1/token"), Err(405));
        assert_eq!(r("POST", "/healthz"), Err(405));
        let e = route("DELETE", &["users".to_string()]).unwrap_err();
        assert!(matches!(e, ApiError::MethodNotAllowed("GET, POST")));
    }
}

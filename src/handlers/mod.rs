//! Request handlers: one function per route, `fn(&Ctx, &Req) -> Result<Resp, ApiError>`, and
//! the helpers they share for reading JSON bodies and query strings.

pub mod auth;
pub mod console;
pub mod credentials;
pub mod installs;
pub mod integrations;
pub mod logs;
pub mod metadata;
pub mod oauth;
pub mod runs;
pub mod session;
pub mod settings;
pub mod users;
pub mod workflows;

use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::router::{self, Route};
use serde_json::{Map, Value};

/// Routes the request, authenticates it as its route declares, passes the edge's hook (rate
/// limits), and runs its handler.
pub fn dispatch(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    if let [console, api, rest @ ..] = req.segments.as_slice() {
        if console == "console" && api == "api" {
            return console::api(ctx, req, rest);
        }
    }
    let route = router::route(&req.method, &req.segments)?;
    let caller = auth::authenticate(ctx, req, route.auth())?;
    if let Some((_, subject)) = &caller {
        admit(ctx, subject)?;
    }
    ctx.set_caller(caller.map(|(c, _)| c));
    run(ctx, req, route)
}

/// Counts the request against its subject's rate; a refusal is counted in the metrics too.
pub fn admit(ctx: &Ctx, subject: &crate::limits::Subject) -> Result<(), ApiError> {
    ctx.app
        .limits
        .admit(subject)
        .inspect_err(|_| ctx.app.metrics.rate_limited())
}

/// Runs the handler of a route whose caller is already known.
pub fn run(ctx: &Ctx, req: &Req, route: Route) -> Result<Resp, ApiError> {
    ctx.set_route(&route);
    match route {
        Route::Healthz => session::healthz(ctx, req),
        Route::Readyz => session::readyz(ctx, req),
        Route::Jwks => session::jwks(ctx, req),
        Route::RequestSigningKey => session::request_signing_key(ctx, req),
        Route::OpenApi => session::openapi(ctx, req),
        Route::Session => session::session(ctx, req),
        Route::CreateUser => users::create(ctx, req),
        Route::CreateUsersBatch => users::create_batch(ctx, req),
        Route::ListUsers => users::list(ctx, req),
        Route::GetUser(u) => users::get(ctx, req, &u),
        Route::UpdateUser(u) => users::update(ctx, req, &u),
        Route::DeleteUser(u) => users::delete(ctx, req, &u),
        Route::UserToken(u) => users::token(ctx, req, &u),
        Route::DeactivateUserWorkflows(u) => users::deactivate_workflows(ctx, req, &u),
        Route::DeleteUserLogs(u) => users::delete_logs(ctx, req, &u),
        Route::CreateCredentialHeadless => credentials::create_headless(ctx, req),
        Route::CreateUserCredential(u) => credentials::create_for_user(ctx, req, &u),
        Route::ListUserCredentials(u) => credentials::list(ctx, req, &u),
        Route::DeleteUserCredential(u, c) => credentials::delete(ctx, req, &u, &c),
        Route::ListIntegrations => integrations::list(ctx, req),
        Route::CreateIntegration => integrations::create(ctx, req),
        Route::GetIntegration(i) => integrations::get(ctx, req, &i),
        Route::DeleteIntegration(i) => integrations::delete(ctx, req, &i),
        Route::InstallIntegration(u, i) => workflows::install(ctx, req, &u, &i),
        Route::ListWorkflows => workflows::list(ctx, req),
        Route::GetWorkflow(w) => workflows::get(ctx, req, &w),
        Route::DeleteWorkflow(w) => workflows::delete(ctx, req, &w),
        Route::ActivateWorkflow => workflows::set_active(ctx, req, true),
        Route::DeactivateWorkflow => workflows::set_active(ctx, req, false),
        Route::WorkflowUsers(w) => workflows::users(ctx, req, &w),
        Route::WorkflowLogs(w) => logs::executions(ctx, req, &w),
        Route::WorkflowErrors(w) => logs::workflow_errors(ctx, req, &w),
        Route::RerunExecution(w, e) => runs::rerun(ctx, req, &w, &e),
        Route::RunWorkflow => runs::run_workflow(ctx, req),
        Route::RunEvent => runs::run_event(ctx, req),
        Route::ListLogs => logs::list(ctx, req),
        Route::GetWebhook => settings::get_webhook(ctx, req),
        Route::PutWebhook => settings::put_webhook(ctx, req),
        Route::RotateWebhookSecret => settings::rotate_webhook_secret(ctx, req),
        Route::GetEventBridge => settings::get_eventbridge(ctx, req),
        Route::PutEventBridge => settings::put_eventbridge(ctx, req),
        Route::ListDeliveries => settings::list_deliveries(ctx, req),
        Route::RetryDelivery(d) => settings::retry_delivery(ctx, req, &d),
        Route::ListCredentials => credentials::list_by_query(ctx, req),
        Route::WorkflowVersions(w) => workflows::versions(ctx, req, &w),
        Route::UpgradeWorkflow(w) => workflows::upgrade(ctx, req, &w),
        Route::WorkflowAnalytics(w) => workflows::analytics(ctx, req, &w),
        Route::CredentialTypes => metadata::credentials(ctx, req),
        Route::CredentialTypeForApp(a) => metadata::credential_for_app(ctx, req, &a),
        Route::Apps => metadata::apps(ctx, req),
        Route::Events => metadata::events(ctx, req),
        Route::InstallUrl(u, i) => installs::install_url(ctx, req, &u, &i),
        Route::RedeemInstallLink => installs::redeem(ctx, req),
        Route::StartInstallation => installs::start(ctx, req),
        Route::CompleteInstallation => installs::complete(ctx, req),
        Route::OAuthUrl => oauth::url(ctx, req, None, None),
        Route::UserOAuthUrl(u, a) => oauth::url(ctx, req, Some(&u), Some(&a)),
        Route::OAuthCallback => oauth::callback(ctx, req),
        Route::EmbeddedJs => crate::web::embedded_js(ctx, req),
        Route::AlloyFrontendJs => crate::web::alloy_frontend_js(ctx, req),
        Route::Asset(name) => crate::web::static_asset(ctx, req, &name),
        Route::FramedPage => crate::web::framed_page(ctx, req),
        Route::HostedInstallPage => crate::web::hosted_page(ctx, req),
        Route::ConsolePage => crate::web::console_page(ctx, req),
        Route::ConsoleSession => console::session_route(ctx, req),
        Route::Stats => logs::stats(ctx, req),
        Route::TestDelivery(target) => settings::test_delivery(ctx, req, &target),
        Route::IntegrationVersions(i) => integrations::versions(ctx, req, &i),
        Route::AdminBackup => session::backup(ctx, req),
    }
}

/// A JSON object request body, with typed field access whose errors name the field.
pub struct Body(pub Map<String, Value>);

/// Parses the body as a JSON object: `400` when it is empty, malformed or not an object.
pub fn json_body(req: &Req) -> Result<Body, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("a JSON object body is required".into()));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(Body(m)),
        Ok(_) => Err(ApiError::BadRequest("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

impl Body {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// A string field that may be absent or null.
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        opt_str(self.get(field), field)
    }

    /// A string field that must be present.
    pub fn req_str(&self, field: &str) -> Result<&str, ApiError> {
        self.opt_str(field)?
            .ok_or_else(|| ApiError::Unprocessable(format!("{field} is required")))
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::BadRequest(format!("{field} must be a boolean"))),
        }
    }

    /// An object field that must be present.
    pub fn req_object(&self, field: &str) -> Result<&Map<String, Value>, ApiError> {
        req_object(self.get(field), field)
    }
}

/// Reads an optional string out of a JSON value: `400` naming `field` for another type.
pub fn opt_str<'a>(v: Option<&'a Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
    }
}

/// Reads a required object out of a JSON value: `422` when missing, `400` for another type.
pub fn req_object<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Err(ApiError::Unprocessable(format!("{field} is required"))),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be an object"))),
    }
}

/// Checks a text field: at most `max` characters and no control characters (`422`).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::Unprocessable(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!("{field} contains a control character")));
    }
    Ok(())
}

/// Checks a required, non-empty text field.
pub fn check_required_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::Unprocessable(format!("{field} must not be empty")));
    }
    check_text(field, value, max)
}

/// A whole-number query parameter within `range`, or `default` when absent.
pub fn query_number(
    req: &Req,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    let Some(raw) = req.query(name).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    let n: u64 = raw
        .parse()
        .map_err(|_| ApiError::Unprocessable(format!("{name} must be a whole number")))?;
    if !range.contains(&n) {
        return Err(ApiError::Unprocessable(format!(
            "{name} must be between {} and {}",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

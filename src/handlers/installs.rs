//! Installing without the modal: install links for a hosted page, and the two-step headless
//! installation (`startInstallation` asks for the credentials a user lacks,
//! `completeInstallation` takes them and installs).

use super::{auth, json_body, workflows::scoped_user};
use crate::credtypes::{self, CredentialType};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::{self, rfc3339};
use crate::store::{credentials, installs, integrations, users, workflows, StoreError};
use crate::tokens;
use crate::workflow::TemplateWorkflow;
use serde_json::{json, Map, Value};

/// `GET /users/{userId}/integrations/{integrationId}/install-url`: `{url}` to the hosted install
/// page, working for `INGOT_INSTALL_LINK_TTL` or until it installs once.
pub fn install_url(ctx: &Ctx, _req: &Req, user: &str, integration: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let user = users::get(&*ctx.db()?, env, user).map_err(|e| ApiError::from_store(e, "user"))?;
    let integration =
        integrations::get(&*ctx.db()?, env, integration).map_err(|e| ApiError::from_store(e, "integration"))?;
    let now = ctx.app.clock.now_ms();
    let ttl = ctx.app.config.install_link_ttl.as_millis() as i64;
    let (secret, link) = ctx.write(move |c| installs::create_link(c, env, &user.id, &integration.id, now, ttl))?;
    let url = format!(
        "{}/embedded-install?link={secret}",
        ctx.app.config.public_url.trim_end_matches('/')
    );
    Ok(Resp::ok(&json!({ "url": url, "expiresAt": rfc3339(link.expires_at) })))
}

/// `POST /install-links/redeem` `{link}` (no other auth: the link is it): a user token for the
/// link's user, bound to the link, for the hosted page to install with. 404 for a link that
/// never was, 410 for one used or expired.
pub fn redeem(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let body = json_body(req)?;
    let secret = body.req_str("link")?;
    let link =
        installs::find_link(&*ctx.db()?, secret)?.ok_or_else(|| ApiError::NotFound("no such install link".into()))?;
    let now = ctx.app.clock.now_ms();
    if link.used_at.is_some() {
        return Err(ApiError::Gone(
            "this install link has been used; ask for a new one".into(),
        ));
    }
    if link.expires_at <= now {
        return Err(ApiError::Gone(
            "this install link has expired; ask for a new one".into(),
        ));
    }
    let user = users::get(&*ctx.db()?, link.env, &link.user_id).map_err(|e| ApiError::from_store(e, "user"))?;
    if user.disabled {
        return Err(ApiError::Forbidden("user is disabled".into()));
    }
    let signer = ctx
        .app
        .signing
        .current(&*ctx.db()?, &ctx.app.store.secrets)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let ttl = (((link.expires_at - now) / 1000).max(1) as u64).min(tokens::MAX_TTL);
    let (token, exp) = tokens::mint(
        &signer,
        &ctx.app.config.public_url,
        &tokens::Holder {
            user_id: &user.id,
            username: &user.username,
            env: link.env,
            link: Some(&link.id),
        },
        ttl,
        now,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Resp::ok(&json!({
        "token": token,
        "expiresAt": rfc3339(exp),
        "userId": user.id,
        "integrationId": link.integration_id,
        "linkExpiresAt": rfc3339(link.expires_at),
    })))
}

/// A block that still needs a credential: its workflow, the block, and the type.
struct Need<'a> {
    workflow: &'a TemplateWorkflow,
    block_id: &'a str,
    kind: &'a CredentialType,
}

/// What the selected workflows need that the user does not have: each `http` block with a
/// credential type (its own or the integration's) of which the user holds none.
fn needs<'a>(
    integration: &'a integrations::Integration,
    selected: &[String],
    held: &[String],
    types: &'a [CredentialType],
) -> Result<Vec<Need<'a>>, ApiError> {
    let mut found = Vec::new();
    for t in integration
        .workflows
        .iter()
        .filter(|t| selected.contains(&t.workflow_id))
    {
        for b in t
            .blocks
            .iter()
            .filter(|b| b.kind == "http" && b.credential_id.is_none())
        {
            let Some(name) = b.credential_type.as_ref().or(integration.credential_type.as_ref()) else {
                continue;
            };
            if held.contains(name) {
                continue;
            }
            let kind = types.iter().find(|k| &k.name == name).ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "block {:?} needs credential type {name:?}, which no longer exists",
                    b.name
                ))
            })?;
            found.push(Need {
                workflow: t,
                block_id: &b.id,
                kind,
            });
        }
    }
    Ok(found)
}

fn string_list(body: &super::Body, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{field} must be an array of strings"))),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be an array of strings"))),
    }
}

/// `POST /headless/startInstallation` `{userId, integrationId, credentialIds?, workflowIds?}`
pub fn start(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let env = caller.env();
    let body = json_body(req)?;
    let user = scoped_user(ctx, &caller, body.opt_str("userId")?)?
        .ok_or_else(|| ApiError::Unprocessable("userId is required".into()))?;
    let integration = integrations::get(&*ctx.db()?, env, body.req_str("integrationId")?)
        .map_err(|e| ApiError::from_store(e, "integration"))?;
    let all: Vec<String> = integration.workflows.iter().map(|t| t.workflow_id.clone()).collect();
    let selected = string_list(&body, "workflowIds")?.unwrap_or_else(|| all.clone());
    if let Some(unknown) = selected.iter().find(|w| !all.contains(w)) {
        return Err(ApiError::Unprocessable(format!(
            "workflowIds: {unknown} is not a workflow of integration {}",
            integration.id
        )));
    }
    if selected.is_empty() {
        return Err(ApiError::Unprocessable(
            "workflowIds must name at least one workflow".into(),
        ));
    }
    let owned = credentials::list(&*ctx.db()?, &user.id)?;
    let credential_ids = string_list(&body, "credentialIds")?.unwrap_or_default();
    if let Some(foreign) = credential_ids.iter().find(|c| !owned.iter().any(|o| &o.id == *c)) {
        return Err(ApiError::Unprocessable(format!(
            "credentialIds: {foreign} is not one of this user's credentials"
        )));
    }
    let held: Vec<String> = owned.iter().map(|c| c.kind.clone()).collect();
    let types = super::metadata::types(&*ctx.db()?, env)?;
    let data: Vec<Value> = needs(&integration, &selected, &held, &types)?
        .iter()
        .map(|n| {
            json!({
                "workflowId": n.workflow.workflow_id,
                "workflowName": n.workflow.name,
                "app": integration.app,
                "blockId": n.block_id,
                "credentialType": n.kind.name,
                "fields": n.kind.properties.iter().map(|p| json!({
                    "name": p.name,
                    "displayName": p.display_name,
                    "description": p.description,
                    "type": if p.secret { "password" } else { "string" },
                    "required": p.required,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now = ctx.app.clock.now_ms();
    let installation = installs::Installation {
        id: ids::object_id(),
        user_id: user.id,
        integration_id: integration.id.clone(),
        workflow_ids: selected,
        credential_ids,
        expires_at: now + installs::INSTALLATION_TTL_MS,
        completed_at: None,
    };
    let id = installation.id.clone();
    ctx.write(move |c| installs::start(c, env, &installation, now))?;
    Ok(Resp::ok(&json!({ "installationId": id, "data": data })))
}

/// `POST /headless/completeInstallation` `{installationId, data: [{workflowId, blockId,
/// fields: [{name, value}]}]}`: stores a credential for each type the start asked for
/// (checked against its type), installs the selected workflows, and closes the installation,
/// all in one write.
pub fn complete(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let env = caller.env();
    let body = json_body(req)?;
    let inst = installs::get(&*ctx.db()?, env, body.req_str("installationId")?)
        .map_err(|e| ApiError::from_store(e, "installation"))?;
    caller.user_ref(Some(&inst.user_id))?;
    let now = ctx.app.clock.now_ms();
    if inst.completed_at.is_some() || inst.expires_at <= now {
        return Err(ApiError::Gone(
            "this installation was completed already or has expired".into(),
        ));
    }
    let entries = match body.get("data") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(ApiError::BadRequest("data must be an array".into())),
    };
    let integration = integrations::get(&*ctx.db()?, env, &inst.integration_id)
        .map_err(|e| ApiError::from_store(e, "integration"))?;
    let held: Vec<String> = credentials::list(&*ctx.db()?, &inst.user_id)?
        .iter()
        .map(|c| c.kind.clone())
        .collect();
    let types = super::metadata::types(&*ctx.db()?, env)?;
    let needed = needs(&integration, &inst.workflow_ids, &held, &types)?;
    // Each entry must answer a block that needs a credential.
    let mut answers: Vec<(usize, &Map<String, Value>)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e
            .as_object()
            .ok_or_else(|| ApiError::BadRequest(format!("data[{i}] must be an object")))?;
        let (w, b) = (
            e.get("workflowId").and_then(Value::as_str),
            e.get("blockId").and_then(Value::as_str),
        );
        let Some(n) = needed
            .iter()
            .position(|n| Some(n.workflow.workflow_id.as_str()) == w && Some(n.block_id) == b)
        else {
            return Err(ApiError::Unprocessable(format!(
                "data[{i}] names no block of this installation that needs a credential"
            )));
        };
        answers.push((n, e));
    }
    // One credential per type: the first answer for it.
    let mut made: Vec<(String, Vec<u8>)> = Vec::new();
    for (n, need) in needed.iter().enumerate() {
        if made.iter().any(|(k, _)| *k == need.kind.name) {
            continue;
        }
        let Some((i, entry)) = answers
            .iter()
            .enumerate()
            .find(|(_, (a, _))| *a == n)
            .map(|(i, (_, e))| (i, *e))
        else {
            return Err(ApiError::Unprocessable(format!(
                "data must hold the fields of a {} credential for block {} of workflow {}",
                need.kind.name, need.block_id, need.workflow.workflow_id
            )));
        };
        let mut fields = Map::new();
        for (j, f) in entry
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (Some(name), Some(value)) = (
                f.get("name").and_then(Value::as_str),
                f.get("value").and_then(Value::as_str),
            ) else {
                return Err(ApiError::BadRequest(format!(
                    "data[{i}].fields[{j}] must be {{name, value}} strings"
                )));
            };
            fields.insert(name.to_string(), value.into());
        }
        credtypes::check_data(need.kind, &fields).map_err(|m| ApiError::Unprocessable(format!("data[{i}]: {m}")))?;
        super::credentials::check_header_fields(&fields)?;
        let plaintext = serde_json::to_vec(&fields).map_err(|e| ApiError::Internal(e.to_string()))?;
        if plaintext.len() > ctx.app.config.max_credential_bytes {
            return Err(ApiError::Unprocessable(format!(
                "data[{i}]: the credential is over the limit of {} bytes",
                ctx.app.config.max_credential_bytes
            )));
        }
        made.push((need.kind.name.clone(), plaintext));
    }
    let secrets = ctx.app.store.secrets.clone();
    let max_count = ctx.app.config.max_credentials;
    let bind = match inst.credential_ids.as_slice() {
        [one] if made.is_empty() => Some(one.clone()),
        _ => None,
    };
    // A token minted from an install link spends the link with the install it completes.
    let link = match &caller {
        auth::Caller::User { link, .. } => link.clone(),
        auth::Caller::Key(_) => None,
    };
    let (workflow_ids, credential_ids) = ctx
        .write(move |c| {
            installs::complete(c, &inst.id, now)?;
            if let Some(link) = &link {
                installs::spend_link(c, link, &inst.integration_id, now)?;
            }
            let mut credential_ids = Vec::new();
            for (kind, plaintext) in &made {
                if credentials::count_for_user(c, &inst.user_id)? >= max_count {
                    return Err(StoreError::Invalid(format!(
                        "the user already has the most credentials allowed ({max_count})"
                    )));
                }
                credential_ids.push(credentials::insert(c, &secrets, env, &inst.user_id, kind, None, plaintext)?.id);
            }
            let installed = workflows::install(
                c,
                env,
                &inst.user_id,
                &inst.integration_id,
                bind.as_deref(),
                Some(&inst.workflow_ids),
            )?;
            Ok((installed.into_iter().map(|w| w.id).collect::<Vec<_>>(), credential_ids))
        })
        .map_err(|e| ApiError::from_store(e, "user or integration"))?;
    Ok(Resp::ok(&json!({
        "message": "success",
        "workflowIds": workflow_ids,
        "credentialIds": credential_ids,
    })))
}

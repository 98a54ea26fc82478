//! The pages and scripts ingot serves to browsers, compiled into the binary: the drop-in
//! frontend SDK (`/embedded.js`, `/alloy-frontend.js`) and the install pages it frames
//! (`/forge-install`, `/authenticate-app`) or that an install link opens (`/embedded-install`).
//!
//! They are static files over the JSON API: no templates, no inline script, a strict
//! Content-Security-Policy, and nothing loaded from another origin.

use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::store::Env;
use std::sync::LazyLock;

const ALLOY_FRONTEND: &str = include_str!("web/alloy-frontend.js");
const INSTALL_HTML: &str = include_str!("web/install.html");
const INSTALL_JS: &str = include_str!("web/install.js");
const INSTALL_CSS: &str = include_str!("web/install.css");
const CONSOLE_HTML: &str = include_str!("web/console.html");
const CONSOLE_JS: &str = include_str!("web/console.js");
const CONSOLE_CSS: &str = include_str!("web/console.css");

/// The ES module, as a classic script that sets `window.Alloy` (what `embedded.js` is): the
/// origin comes from the script's own URL instead of `import.meta`.
static EMBEDDED_JS: LazyLock<String> = LazyLock::new(|| {
    let body = ALLOY_FRONTEND
        .replace(
            "const INGOT = new URL(import.meta.url).origin;",
            "const INGOT = new URL(document.currentScript.src).origin;",
        )
        .replace("export default function Alloy()", "function Alloy()");
    format!("(function () {{\n{body}\nwindow.Alloy = Alloy();\n}})();\n")
});

fn asset(body: &str, content_type: &'static str) -> Resp {
    let mut resp = Resp::ok(&());
    resp.body = body.as_bytes().to_vec();
    resp.content_type = content_type;
    resp.headers.push(("Cache-Control", "public, max-age=300".into()));
    resp.headers.push(("X-Content-Type-Options", "nosniff".into()));
    resp
}

/// `GET /embedded.js`
pub fn embedded_js(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    Ok(asset(&EMBEDDED_JS, "text/javascript; charset=utf-8"))
}

/// `GET /alloy-frontend.js`
pub fn alloy_frontend_js(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    Ok(asset(ALLOY_FRONTEND, "text/javascript; charset=utf-8"))
}

/// `GET /assets/{name}`
pub fn static_asset(_ctx: &Ctx, _req: &Req, name: &str) -> Result<Resp, ApiError> {
    match name {
        "install.js" => Ok(asset(INSTALL_JS, "text/javascript; charset=utf-8")),
        "install.css" => Ok(asset(INSTALL_CSS, "text/css; charset=utf-8")),
        "console.js" => Ok(asset(CONSOLE_JS, "text/javascript; charset=utf-8")),
        "console.css" => Ok(asset(CONSOLE_CSS, "text/css; charset=utf-8")),
        _ => Err(ApiError::NotFound(format!("no asset {name:?}"))),
    }
}

/// Who may frame an install page: ingot's own console, and the configured origins; unset, any
/// origin for a development token and no other for a production one. The token is read without verifying it (the page
/// verifies it through the API), so a forged claim can only get an error page framed.
fn frame_ancestors(ctx: &Ctx, req: &Req) -> String {
    if let Some(origins) = &ctx.app.config.frame_ancestors {
        return format!("'self' {}", origins.join(" "));
    }
    let env = req.query("token").and_then(crate::tokens::unverified_env);
    match env {
        Some(Env::Development) => "*".into(),
        _ => "'self'".into(),
    }
}

fn page(ancestors: &str) -> Resp {
    html(INSTALL_HTML, ancestors, "'none'")
}

fn html(body: &str, ancestors: &str, frames: &str) -> Resp {
    let mut resp = Resp::ok(&());
    resp.body = body.as_bytes().to_vec();
    resp.content_type = "text/html; charset=utf-8";
    resp.headers.push((
        "Content-Security-Policy",
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' https: data:; \
             frame-src {frames}; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
        ),
    ));
    resp.headers.push(("Referrer-Policy", "no-referrer".into()));
    resp.headers.push(("X-Content-Type-Options", "nosniff".into()));
    resp.headers.push(("Cache-Control", "no-store".into()));
    resp
}

/// `GET /forge-install` and `GET /authenticate-app`: the pages inside the modal's iframe.
pub fn framed_page(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    Ok(page(&frame_ancestors(ctx, req)))
}

/// `GET /console`: the operator's console, never framed (its charts are SVG it draws itself).
pub fn console_page(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    Ok(html(CONSOLE_HTML, "'none'", "'self'"))
}

/// `GET /embedded-install?link=`: the install page of an install link, a page of its own.
pub fn hosted_page(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    Ok(page("'none'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_js_is_the_module_as_a_classic_script() {
        assert!(!EMBEDDED_JS.contains("import.meta") && !EMBEDDED_JS.contains("export default"));
        assert!(EMBEDDED_JS.contains("document.currentScript.src") && EMBEDDED_JS.contains("window.Alloy = Alloy();"));
        assert!(ALLOY_FRONTEND.contains("export default function Alloy()"));
    }

    #[test]
    fn the_install_page_loads_no_inline_script() {
        assert!(
            !INSTALL_HTML.contains("<script>") && !INSTALL_HTML.contains(" on"),
            "no inline script or handlers"
        );
        assert!(INSTALL_HTML.contains("src=\"/assets/install.js\""));
    }
}

//! The buyer page: every file under `web/` (the HTML, its ES modules and
//! styles, any images), compiled into the binary so that it runs from
//! anywhere, and served by its path under `web/` with the content type of
//! its extension. It never reads the disk at run time, and never serves
//! what sits beside the page (its unit tests in `web/test/` and their
//! `web/package.json`, `node_modules`), hidden files, kinds of file it has
//! no content type for, or anything outside `web/`: all of those answer
//! the JSON 404 of an unknown route.
//!
//! `server/build.rs` makes cargo rebuild when any file under `web/`
//! changes or appears, so the binary always embeds the page as it is.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::error::AppError;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../web");

/// What sits in `web/` beside the page: its unit tests and their tooling.
const NOT_SERVED: [&str; 3] = ["test", "node_modules", "package.json"];

/// The content type of each kind of file the page may have, by extension.
const CONTENT_TYPES: [(&str, &str); 8] = [
    ("html", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("ico", "image/x-icon"),
    ("json", "application/json"),
];

/// `/`: the page itself.
pub async fn index() -> Result<Response, AppError> {
    served("index.html").ok_or(AppError::NotFound("route"))
}

/// Any other path: the file of `web/` it names, for GET and HEAD. Taking
/// every method keeps a path that names no file the plain JSON 404 of an
/// unknown route, whatever the method (a 405 would say the path exists).
pub async fn asset(method: Method, path: Result<Path<String>, PathRejection>) -> Result<Response, AppError> {
    let not_found = AppError::NotFound("route");
    if method != Method::GET && method != Method::HEAD {
        return Err(not_found);
    }
    let Ok(Path(path)) = path else { return Err(not_found) };
    served(&path).ok_or(not_found)
}

/// The response for `path` (relative to `web/`, as decoded from the URL),
/// if it names a file of the page.
fn served(path: &str) -> Option<Response> {
    let (contents, content_type) = lookup(path)?;
    Some(([(header::CONTENT_TYPE, content_type)], contents).into_response())
}

/// The contents and content type of the page's file at `path`. The path
/// is checked before it is looked up: plain segments only (no `.`, `..`,
/// empty or hidden ones, no backslashes), outside the folders not served.
fn lookup(path: &str) -> Option<(&'static [u8], &'static str)> {
    let mut segments = path.split('/');
    if segments.clone().any(|s| s.is_empty() || s.starts_with('.') || s.contains('\\'))
        || segments.next().is_some_and(|first| NOT_SERVED.contains(&first))
    {
        return None;
    }
    let extension = path.rsplit_once('.')?.1;
    let (_, content_type) = CONTENT_TYPES.iter().find(|(ext, _)| ext.eq_ignore_ascii_case(extension))?;
    Some((WEB.get_file(path)?.contents(), content_type))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::{any, get};
    use tower::ServiceExt;

    use super::*;

    fn text(path: &str) -> &'static str {
        let (bytes, _) = lookup(path).unwrap_or_else(|| panic!("{path} is served"));
        std::str::from_utf8(bytes).unwrap()
    }

    /// The local paths `html` loads (`src="/…"`, `href="/…"`), relative to `web/`.
    fn loaded_by_page(html: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["src=\"/", "href=\"/"] {
            for part in html.split(attr).skip(1) {
                out.push(part.split('"').next().unwrap().to_owned());
            }
        }
        out
    }

    /// The modules a module imports (`from './x.js'`, `import './x.js'`),
    /// resolved against its own folder.
    fn imported_by(module: &str, source: &str) -> Vec<String> {
        let folder = module.rsplit_once('/').map_or("", |(dir, _)| dir);
        let mut out = Vec::new();
        for quote in ['\'', '"'] {
            for marker in [format!("from {quote}"), format!("import {quote}")] {
                for part in source.split(marker.as_str()).skip(1) {
                    let spec = part.split(quote).next().unwrap();
                    let rel = spec.strip_prefix("./").unwrap_or_else(|| panic!("{module}: relative import {spec}"));
                    assert!(!rel.contains(".."), "{module}: {spec} leaves its folder");
                    out.push(if folder.is_empty() { rel.to_owned() } else { format!("{folder}/{rel}") });
                }
            }
        }
        out
    }

    #[test]
    fn every_module_the_page_loads_is_embedded_with_its_type() {
        let html = text("index.html");
        let loaded = loaded_by_page(html);
        assert!(loaded.contains(&"style.css".to_owned()), "{loaded:?}");
        assert!(html.contains("<script type=\"module\" src=\"/js/main.js\">"), "one module entry");
        assert!(!html.contains("<script>"), "no inline scripts: the CSP allows none");
        let mut todo = loaded;
        let mut seen = BTreeSet::new();
        while let Some(path) = todo.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            let (_, content_type) =
                lookup(&path).unwrap_or_else(|| panic!("{path} is loaded by the page but not served"));
            if path.ends_with(".js") {
                assert_eq!(content_type, "text/javascript; charset=utf-8", "{path}");
                todo.extend(imported_by(&path, text(&path)));
            }
        }
        for module in
            ["js/main.js", "js/format.js", "js/seatmap.js", "js/queue-view.js", "js/canvas.js", "js/render.js"]
        {
            assert!(seen.contains(module), "{module} is reached from index.html: {seen:?}");
        }
        // Nothing under web/js that no import reaches (a dead module).
        let modules = WEB.get_dir("js").expect("web/js").files();
        for file in modules {
            let path = file.path().to_str().unwrap();
            assert!(seen.contains(path), "{path} is embedded but nothing imports it");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(lookup("index.html").unwrap().1, "text/html; charset=utf-8");
        assert_eq!(lookup("style.css").unwrap().1, "text/css; charset=utf-8");
        assert_eq!(lookup("js/main.js").unwrap().1, "text/javascript; charset=utf-8");
        for (ext, want) in CONTENT_TYPES {
            assert!(want.contains('/'), "{ext}: {want}");
        }
    }

    #[test]
    fn tests_hidden_files_and_paths_out_of_web_are_not_served() {
        assert!(WEB.get_dir("test").is_some(), "the page's tests sit in web/test/");
        for path in [
            "test/seatmap.test.mjs",
            "node_modules/x/index.js",
            "package.json",
            "../Cargo.toml",
            "js/../index.html",
            "./index.html",
            "js//main.js",
            "/etc/passwd",
            "..\\Cargo.toml",
            ".gitignore",
            "js",
            "",
            "index",
            "%2e%2e/Cargo.toml",
        ] {
            assert!(lookup(path).is_none(), "{path:?} must not be served");
        }
    }

    /// The page's two routes as `http::router` registers them, beside
    /// routes of each shape the API has and the same fallback.
    fn router() -> Router {
        Router::new()
            .route("/", get(index))
            .route("/{*path}", any(asset))
            .route("/healthz", get(|| async { "ok" }))
            .route("/api/v1/events", get(|| async { "events" }))
            .route("/api/v1/events/{event}/queue", get(|| async { "queue" }).delete(|| async { "left" }))
            .fallback(|| async { AppError::NotFound("route") })
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, String, String) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let res = router().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type =
            res.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, content_type, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_page_is_served_and_unknown_paths_stay_the_json_404() {
        let (status, content_type, body) = call("GET", "/").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
        assert!(body.contains("/js/main.js"));
        let (status, content_type, _) = call("GET", "/js/seatmap.js").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));
        let (status, _, _) = call("HEAD", "/style.css").await;
        assert_eq!(status, StatusCode::OK);

        // The API's own routes win over the page's catch-all.
        assert_eq!(call("GET", "/healthz").await.2, "ok");
        assert_eq!(call("GET", "/api/v1/events").await.2, "events");
        assert_eq!(call("DELETE", "/api/v1/events/x/queue").await.2, "left");
        let (status, _, _) = call("PUT", "/api/v1/events").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "a known path keeps its 405");

        for (method, uri) in [
            ("GET", "/api/v1/nope"),
            ("GET", "/api/v1/events/x/nope"),
            ("POST", "/no/such/route"),
            ("POST", "/js/main.js"),
            ("GET", "/app.js"),
            ("GET", "/test/seatmap.test.mjs"),
            ("GET", "/../Cargo.toml"),
            ("GET", "/%2e%2e/Cargo.toml"),
            ("GET", "/js/%2e%2e/%2e%2e/Cargo.toml"),
            ("GET", "/%2E%2E%2FCargo.toml"),
            ("GET", "/js%2f..%2f..%2fCargo.toml"),
            ("GET", "/%ff"),
        ] {
            let (status, content_type, body) = call(method, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {body}");
            assert!(content_type.starts_with("application/json"), "{method} {uri}: {content_type}");
            assert!(body.contains("\"not_found\""), "{method} {uri}: {body}");
        }
    }
}

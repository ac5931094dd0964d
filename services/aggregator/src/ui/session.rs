//! Who is looking: the login form, the session cookie it sets, logout, and [`Viewer`].
//!
//! The session cookie (`scanstream_platform::session`) is HttpOnly, SameSite=Strict, path `/`
//! (the dashboard's writes go to `/jobs…` and `/findings…`), Secure when the request came over
//! HTTPS, and expires with its session. The login form is protected from cross-site posts by a
//! double-submit value (a cookie and a hidden field that must match); every later form by the
//! session's own CSRF value.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use scanstream_platform::auth::{AuthError, Principal, Scope};
use scanstream_platform::session::{COOKIE, same};
use serde::Deserialize;

use super::page;
use crate::api::AppState;

/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "scanstream_login";

/// Who is looking at a page, and what the page may offer them.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The token's name; `None` when auth is off.
    pub name: Option<String>,
    /// The session's CSRF value (empty when auth is off: there is no session to protect).
    pub csrf: String,
    pub can_write: bool,
    pub can_triage: bool,
}

impl Viewer {
    fn of(principal: &Principal) -> Self {
        Viewer {
            name: principal.name.clone(),
            csrf: principal
                .session
                .as_ref()
                .map(|s| s.csrf.clone())
                .unwrap_or_default(),
            can_write: principal.allows(Scope::ScansWrite),
            can_triage: principal.allows(Scope::FindingsTriage),
        }
    }
}

/// Why a page request has no viewer, and so what to answer instead.
#[derive(Debug)]
pub enum Refusal {
    /// No valid session: the login page, then back to `next`.
    Login { next: String },
    /// No valid session on a live fragment: `401`, which the script turns into a login.
    Fragment,
    /// The token may not read scans: `403` with a page saying so.
    NoRead(Viewer),
    /// The role's state is missing from the app (a wiring mistake, not a request's).
    Unwired,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Login { .. } | Refusal::Fragment => "no valid dashboard session",
            Refusal::NoRead(_) => "the token lacks the scans:read scope",
            Refusal::Unwired => "the dashboard's state is missing",
        })
    }
}

impl actix_web::ResponseError for Refusal {
    fn error_response(&self) -> HttpResponse {
        match self {
            Refusal::Login { next } => {
                page::see_other(&format!("/ui/login?next={}", page::encode(next, true)))
            }
            Refusal::Fragment => HttpResponse::Unauthorized().finish(),
            Refusal::NoRead(viewer) => page::refusal(
                actix_web::http::StatusCode::FORBIDDEN,
                viewer,
                "Not allowed",
                "",
                "This token may not read scans (it lacks the scans:read scope).",
            ),
            Refusal::Unwired => HttpResponse::InternalServerError().finish(),
        }
    }
}

/// Every page handler takes a [`Viewer`]: a request without one is answered by its
/// [`Refusal`] before the handler runs.
impl actix_web::FromRequest for Viewer {
    type Error = Refusal;
    type Future = std::future::Ready<Result<Viewer, Refusal>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(match req.app_data::<web::Data<AppState>>() {
            Some(state) => viewer(state, req),
            None => Err(Refusal::Unwired),
        })
    }
}

/// The viewer of a page request: the session's principal (anyone when auth is off), if it may
/// read scans.
fn viewer(state: &AppState, req: &HttpRequest) -> Result<Viewer, Refusal> {
    let principal = if state.auth.enabled() {
        req.cookie(COOKIE)
            .and_then(|c| state.auth.session(c.value(), scanstream_platform::now_ms()))
    } else {
        state.auth.authenticate(None).ok()
    };
    let Some(principal) = principal else {
        if req.query_string().contains("fragment=") {
            return Err(Refusal::Fragment);
        }
        let next = req.uri().path_and_query().map_or("/ui/", |p| p.as_str());
        return Err(Refusal::Login {
            next: next.to_owned(),
        });
    };
    let viewer = Viewer::of(&principal);
    if !principal.allows(Scope::ScansRead) {
        return Err(Refusal::NoRead(viewer));
    }
    Ok(viewer)
}

/// Where to go after logging in: only a dashboard path (never another site).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\'))
        .unwrap_or("/ui/")
        .to_owned()
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    if !state.auth.enabled() {
        return page::see_other("/ui/");
    }
    login_page(&req, &safe_next(query.next.as_deref()), None)
}

fn login_page(req: &HttpRequest, next: &str, error: Option<&str>) -> HttpResponse {
    let check = uuid::Uuid::new_v4().simple().to_string();
    let viewer = Viewer {
        name: None,
        csrf: String::new(),
        can_write: false,
        can_triage: false,
    };
    let body = html! {
        form.card.login method="post" action="/ui/login" {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            input type="hidden" name="csrf" value=(check);
            input type="hidden" name="next" value=(next);
            label for="token" { "API token" }
            input #token type="password" name="token" required autocomplete="current-password" autofocus;
            p.hint { "The token is checked against this deployment's api.tokens; the session lasts until you log out or it expires." }
            button type="submit" { "Log in" }
        }
    };
    let mut response = page::page(&viewer, "Log in", "", body);
    if error.is_some() {
        *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
    }
    let cookie = Cookie::build(LOGIN_COOKIE, check)
        .path("/ui/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(CookieDuration::minutes(30))
        .finish();
    let _ = response.add_cookie(&cookie);
    response
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let next = safe_next(form.next.as_deref());
    let expected = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if !expected.is_some_and(|e| same(&form.csrf, &e)) {
        metrics::counter!(crate::metrics::DASHBOARD_LOGINS, "outcome" => "expired").increment(1);
        return login_page(
            &req,
            &next,
            Some("The form expired or came from another site; please log in again."),
        );
    }
    match state.auth.login(&form.token, scanstream_platform::now_ms()) {
        Ok((principal, value)) => {
            tracing::info!(
                token = principal.name.as_deref().unwrap_or(""),
                "dashboard login"
            );
            metrics::counter!(crate::metrics::DASHBOARD_LOGINS, "outcome" => "ok").increment(1);
            let max_age = i64::try_from(state.auth.session_ttl().as_secs()).unwrap_or(i64::MAX);
            let cookie = Cookie::build(COOKIE, value)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(req.connection_info().scheme() == "https")
                .max_age(CookieDuration::seconds(max_age))
                .finish();
            let mut response = page::see_other(&next);
            let _ = response.add_cookie(&cookie);
            let _ = response
                .add_removal_cookie(&Cookie::build(LOGIN_COOKIE, "").path("/ui/login").finish());
            response
        }
        Err(e) => {
            tracing::info!(reason = e.metric_label(), "dashboard login refused");
            metrics::counter!(crate::metrics::DASHBOARD_LOGINS, "outcome" => "refused")
                .increment(1);
            let text = match e {
                AuthError::Unknown => "Unknown or revoked token.",
                _ => "Enter an API token.",
            };
            login_page(&req, &next, Some(text))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LogoutForm>,
) -> HttpResponse {
    let principal = req
        .cookie(COOKIE)
        .and_then(|c| state.auth.session(c.value(), scanstream_platform::now_ms()));
    let Some(session) = principal.and_then(|p| p.session) else {
        return page::see_other("/ui/login");
    };
    if !same(&form.csrf, &session.csrf) {
        return HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("the logout form lacks this session's CSRF value");
    }
    let mut response = page::see_other("/ui/login");
    let _ = response.add_removal_cookie(&Cookie::build(COOKIE, "").path("/").finish());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/jobs?status=failed")),
            "/ui/jobs?status=failed"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/ui//evil",
            "/jobs",
            "/ui/\\x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn values_and_paths_are_encoded() {
        assert_eq!(
            page::encode("/ui/jobs?a=b&c d", true),
            "/ui/jobs%3Fa%3Db%26c%20d"
        );
        assert_eq!(page::encode("a b/c", false), "a+b%2Fc");
    }
}

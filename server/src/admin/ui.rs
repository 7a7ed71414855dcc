//! `GET /admin-ui/…`: the Admin UI's bundle (`ui/dist` of the npm package),
//! when `--admin-ui-dist` points at it. Every asset reference in its
//! `index.html` is relative, and its routes live in the URL's fragment, so it
//! works from any path that ends with a slash: `/admin-ui` is redirected to
//! `/admin-ui/`, which serves `index.html`.

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{ADMIN_UI_PATH, AdminConfig};

/// The bundle's routes, or (without a bundle) a filter that matches nothing.
pub(crate) fn ui_routes(
    config: Option<AdminConfig>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let dist = config.and_then(|config| config.ui_dist);
    let enabled = dist.is_some();
    let served = warp::any()
        .and_then(move || async move {
            if enabled {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one();
    // Relative, so that it also holds behind a proxy that mounts the server
    // under a prefix: `…/admin-ui` + `admin-ui/` = `…/admin-ui/`.
    let redirect = warp::path(ADMIN_UI_PATH)
        .and(warp::path::end())
        .and(warp::path::full())
        .and_then(|full: warp::path::FullPath| async move {
            if full.as_str().ends_with('/') {
                Err(warp::reject::not_found())
            } else {
                // By hand: warp's redirects take a `Uri`, which cannot be relative.
                let mut response = Response::default();
                *response.status_mut() = warp::http::StatusCode::TEMPORARY_REDIRECT;
                response.headers_mut().insert(
                    warp::http::header::LOCATION,
                    warp::http::HeaderValue::from_static(LOCATION),
                );
                Ok(response)
            }
        });
    let files = warp::path(ADMIN_UI_PATH)
        .and(warp::fs::dir(dist.unwrap_or_default()))
        .map(Reply::into_response);
    warp::get().and(served).and(redirect.or(files).unify())
}

/// Where `/admin-ui` is sent: `admin-ui/` ([`ADMIN_UI_PATH`] and a slash),
/// relative to it.
const LOCATION: &str = "admin-ui/";

const _: () = assert!(LOCATION.len() == ADMIN_UI_PATH.len() + 1);

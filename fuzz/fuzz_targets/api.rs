//! The API request parser (`mgmt::api::parse`, with its query parsing): any method and URL
//! give a request or an error response (400, 404, 405, with a JSON body), never a panic.
//!
//! The input is the request line's two parts: the method up to the first space, the URL
//! after it (not UTF-8 is replaced, as the HTTP server hands over only text).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::mgmt::api::{Request, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (method, url) = text.split_once(' ').unwrap_or((&text, ""));
    match parse(method, url) {
        Ok(req) => {
            let get = method == "GET";
            let post = method == "POST";
            assert!(get || post, "{method:?} {url:?} accepted: {req:?}");
            if let Request::Drain {
                service, backend, ..
            }
            | Request::Enable { service, backend }
            | Request::Weight {
                service, backend, ..
            } = &req
            {
                assert!(!service.is_empty() && !backend.is_empty(), "{req:?}");
            }
        }
        Err(resp) => {
            assert!(
                [400, 404, 405].contains(&resp.status),
                "{method:?} {url:?}: status {}",
                resp.status
            );
            let body: serde_json::Value =
                serde_json::from_str(&resp.body).expect("the error body is JSON");
            assert!(body.get("error").is_some_and(|e| e.is_string()));
        }
    }
});

//! The ingress as the CLI and the workers see it: a few blocking JSON calls over HTTP(S).
//!
//! Every call has a timeout (nothing hangs on a server that went away); the caller decides
//! whether to retry. Keys are checked to be URL-safe where they are made (run ids, queue names).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CompleteTake, Completed, Completion, Fence, JobSlot, Lease, Page, RestateError, RunInput, WaitTake};

/// The ingress of a Restate server (`http://127.0.0.1:8080` on one machine).
#[derive(Clone)]
pub struct Ingress {
    base: String,
    agent: ureq::Agent,
}

impl Ingress {
    pub fn new(url: &str) -> Ingress {
        Ingress::with_timeout(url, Duration::from_secs(30))
    }

    pub fn with_timeout(url: &str, timeout: Duration) -> Ingress {
        let agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        Ingress { base: url.trim_end_matches('/').to_string(), agent }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, RestateError> {
        let text = serde_json::to_string(body)
            .map_err(|e| RestateError::Decode { url: format!("{}/{path}", self.base), reason: e.to_string() })?;
        self.post_text(path, text)
    }

    /// A call whose handler takes no input: an empty body and no content type (the ingress
    /// refuses a content type on a call that takes no input, with 400).
    fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, RestateError> {
        self.post_text(path, String::new())
    }

    fn post_text<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T, RestateError> {
        let url = format!("{}/{path}", self.base);
        let request = self.agent.post(&url);
        let request = if body.is_empty() { request } else { request.header("content-type", "application/json") };
        let mut resp =
            request.send(body).map_err(|e| RestateError::Http { url: url.clone(), reason: e.to_string() })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| RestateError::Http { url: url.clone(), reason: e.to_string() })?;
        if !(200..300).contains(&status) {
            return Err(RestateError::Status { url, status, body: text.chars().take(2000).collect() });
        }
        serde_json::from_str(&text).map_err(|e| RestateError::Decode { url, reason: e.to_string() })
    }

    /// Submits a run (its `LoopRun` workflow); a run already submitted is left as it is.
    pub fn submit(&self, input: &RunInput) -> Result<(), RestateError> {
        match self.post::<_, serde_json::Value>(&format!("LoopRun/{}/run/send", input.run_id), input) {
            Ok(_) => Ok(()),
            // The workflow of this run id exists already: submitting twice is harmless.
            Err(RestateError::Status { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until run `run_id`'s workflow has ended (Restate's attach), at most this client's
    /// timeout; true when it ended, false when the wait timed out.
    pub fn wait_run(&self, run_id: &str) -> Result<bool, RestateError> {
        let url = format!("{}/restate/workflow/LoopRun/{run_id}/attach", self.base);
        match self.agent.get(&url).call() {
            Ok(resp) if resp.status().is_success() => Ok(true),
            // The workflow ended with an error: it ended all the same.
            Ok(resp) if resp.status().as_u16() == 500 => Ok(true),
            Ok(resp) => Err(RestateError::Status { url, status: resp.status().as_u16(), body: String::new() }),
            Err(ureq::Error::Timeout(_)) => Ok(false),
            Err(e) => Err(RestateError::Http { url, reason: e.to_string() }),
        }
    }

    /// Entries `from..` of a run's log (a page at most).
    pub fn read(&self, run_id: &str, from: u64) -> Result<Page, RestateError> {
        self.post(&format!("LoopLog/{run_id}/read"), &from)
    }

    /// A take that waits up to `ask.wait_ms` for a job (this client's timeout must be longer).
    pub fn wait_take(&self, queue: &str, ask: &WaitTake) -> Result<Option<Lease>, RestateError> {
        self.post(&format!("LoopJobs/{queue}/wait_take"), ask)
    }

    pub fn renew(&self, queue: &str, fence: &Fence) -> Result<bool, RestateError> {
        self.post(&format!("LoopJobs/{queue}/renew"), fence)
    }

    pub fn release(&self, queue: &str, fence: &Fence) -> Result<bool, RestateError> {
        self.post(&format!("LoopJobs/{queue}/release"), fence)
    }

    pub fn complete(&self, queue: &str, done: &Completion) -> Result<bool, RestateError> {
        self.post(&format!("LoopJobs/{queue}/complete"), done)
    }

    /// Completes a job and takes the next one in the same call.
    pub fn complete_take(&self, queue: &str, done: &CompleteTake) -> Result<Completed, RestateError> {
        self.post(&format!("LoopJobs/{queue}/complete_take"), done)
    }

    pub fn jobs(&self, queue: &str) -> Result<Vec<JobSlot>, RestateError> {
        self.post_empty(&format!("LoopJobs/{queue}/list"))
    }

    /// Registers (or re-registers, `force`) the endpoint at `uri` with the admin API.
    pub fn register(admin: &str, uri: &str) -> Result<(), RestateError> {
        let admin = Ingress::new(admin);
        let body = serde_json::json!({ "uri": uri, "force": true });
        admin.post::<_, serde_json::Value>("deployments", &body).map(|_| ())
    }
}

/// Whether `name` may be a key in a URL path as it is (queue names).
pub fn url_safe(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

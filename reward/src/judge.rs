//! The LLM judge: an OpenAI-compatible `/v1/chat/completions` client (vLLM, SGLang, or any
//! compatible service) that asks for a JSON verdict such as `{"Correctness": 1}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how to ask the judge. Defaults are Thyme's: temperature 0.1, 256 tokens, 3 tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Base URL of the endpoint, e.g. `http://localhost:8000/v1` (`/chat/completions` is
    /// appended unless present).
    pub url: String,
    /// The served model's name.
    pub model: String,
    /// Environment variable holding the API key, if the endpoint wants one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Sampling temperature. Default 0.1.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Most tokens in the reply. Default 256.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Per-request timeout, seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Attempts per question. Default 3.
    #[serde(default = "default_tries")]
    pub tries: u32,
}

fn default_temperature() -> f64 {
    0.1
}
fn default_max_tokens() -> u32 {
    256
}
fn default_timeout() -> f64 {
    30.0
}
fn default_tries() -> u32 {
    3
}

/// Why the judge gave no verdict.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// Every try failed; the last failure is given.
    #[error("the judge at {url} gave no verdict after {tries} tries: {last}")]
    NoVerdict {
        /// The endpoint.
        url: String,
        /// Tries made.
        tries: u32,
        /// The last failure.
        last: String,
    },
}

/// A connected judge client (cheap to share across threads).
#[derive(Debug)]
pub struct Judge {
    config: JudgeConfig,
    endpoint: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl Judge {
    /// A client for `config`.
    ///
    /// # Errors
    /// A one-line message naming the bad key (`rewards.judge.<key>`).
    pub fn new(config: JudgeConfig) -> Result<Judge, String> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "rewards.judge.url: expected an http(s) URL, got {:?}",
                config.url
            ));
        }
        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err("rewards.judge.timeout_s: must be positive".into());
        }
        if config.tries == 0 {
            return Err("rewards.judge.tries: must be at least 1".into());
        }
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!("rewards.judge.api_key_env: environment variable {var} is not set")
            })?),
            None => None,
        };
        let base = config.url.trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(config.timeout_s)))
            .build()
            .new_agent();
        Ok(Judge {
            config,
            endpoint,
            api_key,
            agent,
        })
    }

    /// Ask `prompt` and read the 0/1 verdict under `key` from the JSON reply.
    ///
    /// # Errors
    /// [`JudgeError::NoVerdict`] after the configured tries.
    pub fn verdict(&self, prompt: &str, key: &str) -> Result<f64, JudgeError> {
        let mut last = String::new();
        for _ in 0..self.config.tries {
            match self.ask(prompt).and_then(|reply| read_verdict(&reply, key)) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(JudgeError::NoVerdict {
            url: self.endpoint.clone(),
            tries: self.config.tries,
            last,
        })
    }

    /// One request; the reply's message content.
    fn ask(&self, prompt: &str) -> Result<String, String> {
        let body = serde_json::json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        });
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = req.send(body.to_string()).map_err(|e| e.to_string())?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let reply: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("reply is not JSON: {e}"))?;
        reply["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "reply has no choices[0].message.content".to_string())
    }
}

/// The 0/1 value under `key` in a reply: the first JSON object in it (code fences allowed),
/// else a `"key": 0|1` pattern anywhere.
pub fn read_verdict(reply: &str, key: &str) -> Result<f64, String> {
    if let Some(obj) = first_json_object(reply)
        && let Some(v) = obj.get(key)
    {
        let n = match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if let Some(n) = n.filter(|n| *n == 0.0 || *n == 1.0) {
            return Ok(n);
        }
    }
    let pattern = format!(r#""?{}"?\s*:\s*"?([01])\b"#, regex::escape(key));
    let re = regex::Regex::new(&pattern).map_err(|e| e.to_string())?;
    re.captures(reply)
        .and_then(|c| c[1].parse().ok())
        .ok_or_else(|| {
            format!(
                "no {key:?} verdict in the reply: {:?}",
                reply.chars().take(200).collect::<String>()
            )
        })
}

fn first_json_object(s: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let start = s.find('{')?;
    let close = start + crate::grade::braced_len(&s[start..])?;
    serde_json::from_str(&s[start..=close]).ok()
}

/// The accuracy question put to the judge.
pub fn correctness_prompt(question: &str, solution: &str, answer: &str) -> String {
    format!(
        "You are grading the final answer to a question.\n\n\
         Question: {question}\n\nReference answer: {solution}\n\nModel's answer: {answer}\n\n\
         Is the model's answer equivalent to the reference answer (same value or meaning; \
         ignore formatting, units written or omitted, and wording)? Reply with JSON only: \
         {{\"Correctness\": 1}} if it is, {{\"Correctness\": 0}} if it is not."
    )
}

/// The consistency question put to the judge.
pub fn consistency_prompt(thinking_tail: &str, answer: &str) -> String {
    format!(
        "Below are the end of a model's reasoning and the final answer it gave.\n\n\
         Reasoning (end): {thinking_tail}\n\nFinal answer: {answer}\n\n\
         Does the final answer follow from and agree with the reasoning? Reply with JSON only: \
         {{\"Consistency\": 1}} if it does, {{\"Consistency\": 0}} if it does not."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verdicts_in_the_forms_judges_reply() {
        assert_eq!(
            read_verdict(r#"{"Correctness": 1}"#, "Correctness"),
            Ok(1.0)
        );
        assert_eq!(
            read_verdict("```json\n{\"Correctness\": 0}\n```", "Correctness"),
            Ok(0.0)
        );
        assert_eq!(
            read_verdict(r#"Sure. {"Correctness": "1"}"#, "Correctness"),
            Ok(1.0)
        );
        assert_eq!(
            read_verdict(r#"verdict: "Consistency": 1, bye"#, "Consistency"),
            Ok(1.0)
        );
        assert!(read_verdict("I think it is right", "Correctness").is_err());
        assert!(read_verdict(r#"{"Correctness": 7}"#, "Correctness").is_err());
    }
}

//! The enrolment token, a wire contract between `kaohe-collector token create` and
//! `kaohe-agent enroll`: one line, `kaohe1.` followed by base64url (no padding) of JSON
//! `{"u": collector URL, "f": "sha256:…" CA fingerprint, "s": one-time secret,
//!   "x": expiry (Unix seconds), "n": unit path}`.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Path of the enrolment endpoint below the collector URL.
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// Path of the report ingest endpoint below the collector URL.
pub const INGEST_PATH: &str = "/api/v1/reports";

pub const TOKEN_PREFIX: &str = "kaohe1.";

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    #[serde(rename = "u")]
    pub url: String,
    #[serde(rename = "f")]
    pub ca_fingerprint: String,
    #[serde(rename = "s")]
    pub secret: String,
    #[serde(rename = "x")]
    pub expires: i64,
    #[serde(rename = "n")]
    pub unit: String,
}

impl Token {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    pub fn decode(text: &str) -> Result<Token, TokenError> {
        let body = text.trim().strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Prefix)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(TokenError::Damaged)?;
        let t: Token = serde_json::from_slice(&json).map_err(TokenError::Content)?;
        if !t.url.starts_with("https://") {
            return Err(TokenError::NotHttps);
        }
        Ok(t)
    }
}

/// An enrolment token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("注册令牌应以 kaohe1. 开头 (a token starts with kaohe1.)")]
    Prefix,
    #[error("注册令牌已损坏, 请完整复制 (the token is damaged; copy it whole)")]
    Damaged(#[source] base64::DecodeError),
    #[error("注册令牌内容无效 (the token's content is invalid)")]
    Content(#[source] serde_json::Error),
    #[error("注册令牌中的采集中心地址不是 https:// (the token's collector URL is not https)")]
    NotHttps,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_damage_is_explained() {
        let t = Token {
            url: "https://192.0.2.10:8443".into(),
            ca_fingerprint: format!("sha256:{}", "ab".repeat(32)),
            secret: "s3cret".into(),
            expires: 1_900_000_000,
            unit: "ningxia/yinchuan/xingqing".into(),
        };
        let line = t.encode();
        assert!(line.starts_with("kaohe1.") && !line.contains(char::is_whitespace));
        assert_eq!(Token::decode(&format!("  {line}\n")).expect("decodes"), t);
        assert!(Token::decode(&line[..line.len() - 5]).is_err());
        assert!(
            Token::decode("hello")
                .expect_err("no prefix")
                .to_string()
                .contains("kaohe1.")
        );
    }
}

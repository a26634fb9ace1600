//! Authentication: JWT bearer tokens, HS256 with a shared secret or RS256 with the keys of a
//! JSON Web Key Set (an SSO/OIDC provider's), checked for signature, expiry, issuer and audience.
//! The result is a [`Principal`]: the reviewer id (`sub`) and one configured role.

use crate::config::AuthSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Who is calling: an authenticated reviewer and their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub reviewer_id: String,
    pub role: String,
}

/// Why a request was not authenticated (HTTP 401) or its role is not one of ours (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    MissingToken,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// Authenticated, but the role claim names no configured role (or several).
    #[error("{0}")]
    NoRole(String),
}

impl AuthError {
    /// Label of the `reason` of the authentication-failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::Expired => "expired",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::NoRole(_) => "no_role",
        }
    }
}

/// Errors setting the authenticator up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("key {kid:?} of the JWKS file is not usable: {source}")]
    Key { kid: Option<String>, source: jsonwebtoken::errors::Error },
}

/// The claims the gateway reads; `role` is read by name from the raw claims.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

struct RsaKey {
    kid: Option<String>,
    key: DecodingKey,
}

/// Checks bearer tokens.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    rs256: Vec<RsaKey>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
    role_claim: String,
    roles: BTreeSet<String>,
}

impl Authenticator {
    /// Builds the checks from configuration; `jwks` is the resolved JWKS path, if any.
    pub fn new(
        settings: &AuthSettings,
        jwks: Option<&Path>,
        roles: impl IntoIterator<Item = String>,
    ) -> Result<Self, AuthSetupError> {
        let mut rs256 = Vec::new();
        if let Some(path) = jwks {
            let shown = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read { path: shown.clone(), source })?;
            let set: JwkSet =
                serde_json::from_str(&text).map_err(|source| AuthSetupError::Parse { path: shown, source })?;
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone();
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|source| AuthSetupError::Key { kid: kid.clone(), source })?;
                rs256.push(RsaKey { kid, key });
            }
        }
        Ok(Authenticator {
            hs256: settings.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            rs256,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway.0.as_secs(),
            role_claim: settings.role_claim.clone(),
            roles: roles.into_iter().collect(),
        })
    }

    /// Checks the value of an `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().ok_or_else(|| invalid("HS256 tokens are not accepted"))?,
            Algorithm::RS256 => self.rsa_key(header.kid.as_deref())?,
            other => return Err(invalid(&format!("algorithm {other:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => invalid("bad signature"),
            ErrorKind::InvalidIssuer => invalid("wrong issuer"),
            ErrorKind::InvalidAudience => invalid("wrong audience"),
            ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
            _ => AuthError::Invalid(e.to_string()),
        })?;
        if claims.claims.sub.trim().is_empty() {
            return Err(invalid("empty subject"));
        }
        let role = self.role_of(claims.claims.rest.get(&self.role_claim))?;
        Ok(Principal { reviewer_id: claims.claims.sub, role })
    }

    fn rsa_key(&self, kid: Option<&str>) -> Result<&DecodingKey, AuthError> {
        let found = match kid {
            Some(kid) => self.rs256.iter().find(|k| k.kid.as_deref() == Some(kid)),
            // Without a key id, only an unambiguous key set will do.
            None if self.rs256.len() == 1 => self.rs256.first(),
            None => None,
        };
        found.map(|k| &k.key).ok_or_else(|| invalid("no RS256 key matches the token's key id"))
    }

    fn role_of(&self, claim: Option<&serde_json::Value>) -> Result<String, AuthError> {
        let names: Vec<&str> = match claim {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).collect(),
            _ => return Err(AuthError::NoRole(format!("the token has no `{}` claim", self.role_claim))),
        };
        let known: Vec<&str> = names.into_iter().filter(|n| self.roles.contains(*n)).collect();
        match known.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(AuthError::NoRole("the token's role is not a configured role".into())),
            _ => Err(AuthError::NoRole("the token names several configured roles; use a token with one".into())),
        }
    }
}

fn invalid(why: &str) -> AuthError {
    AuthError::Invalid(why.to_owned())
}

/// The claims of a token minted for local use.
#[derive(Debug, Serialize)]
pub struct MintClaims<'a> {
    pub sub: &'a str,
    pub iss: &'a str,
    pub aud: &'a str,
    pub exp: u64,
    pub iat: u64,
    #[serde(flatten)]
    pub role: serde_json::Map<String, serde_json::Value>,
}

/// Signs an HS256 token with the configured secret, for local testing (`tollgate gateway token`).
pub fn mint_hs256(
    settings: &AuthSettings,
    reviewer_id: &str,
    role: &str,
    ttl: std::time::Duration,
) -> Result<String, String> {
    let secret = settings.hs256_secret.as_ref().ok_or("the configuration has no auth.hs256_secret")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut role_claim = serde_json::Map::new();
    role_claim.insert(settings.role_claim.clone(), serde_json::Value::String(role.to_owned()));
    let claims = MintClaims {
        sub: reviewer_id,
        iss: &settings.issuer,
        aud: &settings.audience,
        exp: now + ttl.as_secs(),
        iat: now,
        role: role_claim,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;

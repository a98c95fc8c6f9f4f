//! Validation of the extracted [`Config`]: every implemented key's value against its row's
//! [`Rule`](super::keys::Rule) in the key table and the few checks that span keys.

use figment::value::Value;
use figment::Figment;

use super::keys::{self, Rule, Status};
use super::provenance::{describe, render};
use super::{Config, ConfigError};

/// Checks `config` (extracted from `figment`, which says where each value came from) and
/// normalises what snapserver treats as unset. Errors name the key, the value, its origin and
/// what the key allows.
pub(super) fn validate(config: &mut Config, figment: &Figment) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: &str| ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        origin: describe(figment, key),
        allowed: keys::allowed(key),
    };

    // As in snapserver, an empty path in a file means "not set".
    let grpc = &mut config.grpc;
    for path in [
        &mut config.server.datadir,
        &mut grpc.token_file,
        &mut grpc.tls_cert,
        &mut grpc.tls_key,
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *path = None;
        }
    }

    let values = Value::serialize(&*config).map_err(|error| {
        ConfigError::Extract(format!("cannot check the configuration: {error}"))
    })?;
    for key in keys::KEYS
        .iter()
        .filter(|key| key.status == Status::Implemented)
    {
        let Some(value) = values.find_ref(key.name) else {
            continue;
        };
        for item in items(value, key.rule) {
            if !key.rule.accepts(&item) {
                let shown = if key.secret { "(hidden)" } else { &item };
                return Err(invalid(key.name, shown));
            }
        }
    }

    // A certificate needs its key and a key its certificate.
    let grpc = &config.grpc;
    if grpc.tls_cert.is_some() && grpc.tls_key.is_none() {
        return Err(invalid("grpc.tls_key", ""));
    }
    if grpc.tls_key.is_some() && grpc.tls_cert.is_none() {
        return Err(invalid("grpc.tls_cert", ""));
    }
    // HTTPS needs a certificate and its key.
    if config.http.enabled && config.http.ssl_enabled {
        for (key, value) in [
            ("ssl.certificate", &config.ssl.certificate),
            ("ssl.certificate_key", &config.ssl.certificate_key),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    value: String::new(),
                    origin: describe(figment, key),
                    allowed: "a PEM file: http.ssl_enabled is true".to_owned(),
                });
            }
        }
        // Client certificates are checked against named CAs only.
        let ssl = &config.ssl;
        if ssl.verify_clients && ssl.client_cert.iter().all(|path| path.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "ssl.client_cert".to_owned(),
                value: String::new(),
                origin: describe(figment, "ssl.client_cert"),
                allowed: "a PEM file of the CAs that sign client certificates: \
                          ssl.verify_clients is true"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// The values to check one by one, as text: each element of a list (an empty list is checked
/// as one empty value, so a list that must name something fails), each scheme of a scheme
/// list (so a message names the bad one), or the value itself.
fn items(value: &Value, rule: Rule) -> Vec<String> {
    match (value, rule) {
        (Value::Array(_, items), _) if items.is_empty() => vec![String::new()],
        (Value::Array(_, items), _) => items.iter().map(render).collect(),
        (value, Rule::Schemes) => render(value)
            .split(',')
            .map(str::trim)
            .filter(|scheme| !scheme.is_empty())
            .map(str::to_owned)
            .collect(),
        (value, _) => vec![render(value)],
    }
}

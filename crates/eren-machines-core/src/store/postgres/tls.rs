//! TLS to the server, with `sslmode` as libpq defines it and rustls doing
//! the work (tokio-postgres parses only `disable`, `prefer` and `require`,
//! and verifies nothing itself):
//!
//! - `disable`: plain.
//! - `prefer` (the default): TLS if the server offers it, else plain; the
//!   certificate is not checked.
//! - `require`: TLS or no connection; the certificate is not checked unless
//!   `sslrootcert` is given, which makes it `verify-ca` (as in libpq).
//! - `verify-ca`: the certificate must chain to `sslrootcert` (or, without
//!   it, to the Mozilla roots of `webpki-roots`).
//! - `verify-full`: that, and it must name the host connected to.
//!
//! `sslcert` and `sslkey` (PEM files) give a client certificate.

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode as ClientSslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
  CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// The URL parameters read here rather than by tokio-postgres.
const PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
  Disable,
  Prefer,
  Require,
  VerifyCa,
  VerifyFull,
}

/// What the URL asks of TLS.
#[derive(Debug, Clone)]
pub struct TlsSettings {
  pub mode: SslMode,
  pub root_cert: Option<PathBuf>,
  pub cert: Option<PathBuf>,
  pub key: Option<PathBuf>,
}

/// Takes the TLS parameters out of a URL's query: the URL left for
/// tokio-postgres, and the settings.
pub fn take_parameters(url: &str) -> Result<(String, TlsSettings)> {
  let mut settings = TlsSettings {
    mode: SslMode::Prefer,
    root_cert: None,
    cert: None,
    key: None,
  };
  let Some((base, query)) = url.split_once('?') else {
    return Ok((url.to_owned(), settings));
  };
  let mut kept = Vec::new();
  for pair in query.split('&') {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    if !PARAMETERS.contains(&name) {
      kept.push(pair);
      continue;
    }
    let value = percent_decoded(value)?;
    match name {
      "sslmode" => {
        settings.mode = match value.as_str() {
          "disable" => SslMode::Disable,
          // libpq's `allow` tries plain first; TLS when offered is no worse.
          "allow" | "prefer" => SslMode::Prefer,
          "require" => SslMode::Require,
          "verify-ca" => SslMode::VerifyCa,
          "verify-full" => SslMode::VerifyFull,
          other => {
            return Err(Error::InvalidArgument(format!(
              "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got '{other}'"
            )))
          }
        }
      }
      "sslrootcert" => settings.root_cert = Some(value.into()),
      "sslcert" => settings.cert = Some(value.into()),
      _ => settings.key = Some(value.into()),
    }
  }
  let url = match kept.is_empty() {
    true => base.to_owned(),
    false => format!("{base}?{}", kept.join("&")),
  };
  Ok((url, settings))
}

fn percent_decoded(value: &str) -> Result<String> {
  let bytes = value.as_bytes();
  let mut decoded = Vec::with_capacity(bytes.len());
  let mut i = 0;
  while i < bytes.len() {
    if bytes[i] == b'%' {
      let hex = value
        .get(i + 1..i + 3)
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .ok_or_else(|| Error::InvalidArgument(format!("a bad %-escape in '{value}'")))?;
      decoded.push(hex);
      i += 3;
    } else {
      decoded.push(bytes[i]);
      i += 1;
    }
  }
  String::from_utf8(decoded)
    .map_err(|_| Error::InvalidArgument(format!("'{value}' is not UTF-8 once decoded")))
}

impl TlsSettings {
  /// The mode tokio-postgres negotiates with.
  pub fn client_mode(&self) -> ClientSslMode {
    match self.mode {
      SslMode::Disable => ClientSslMode::Disable,
      SslMode::Prefer => ClientSslMode::Prefer,
      _ => ClientSslMode::Require,
    }
  }

  /// The connector, or `None` for plain connections. Certificate and key
  /// files are read here, so a missing one fails `connect` clearly.
  pub fn connector(&self) -> Result<Option<MakeRustlsConnect>> {
    if self.mode == SslMode::Disable {
      return Ok(None);
    }
    // rustls 0.23.48 deprecates ring's provider for its lack of
    // post-quantum key exchange; aws-lc-rs has it but needs cmake and a
    // C toolchain per target that the darwin and windows-gnu cross builds
    // here do not have. PostgreSQL servers do not offer it yet either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root_cert) {
      (SslMode::Prefer, _) | (SslMode::Require, None) => Arc::new(Unchecked(provider.clone())),
      (SslMode::VerifyFull, root) => self.webpki(root.as_ref(), &provider)?,
      (_, root) => Arc::new(ChainOnly(self.webpki(root.as_ref(), &provider)?)),
    };
    let builder = ClientConfig::builder_with_provider(provider)
      .with_safe_default_protocol_versions()
      .map_err(|e| tls_error("cannot set up TLS", e))?
      .dangerous()
      .with_custom_certificate_verifier(verifier);
    let config = match (&self.cert, &self.key) {
      (None, None) => builder.with_no_client_auth(),
      (Some(cert), Some(key)) => {
        let chain = CertificateDer::pem_file_iter(cert)
          .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
          .map_err(|e| tls_error(&format!("cannot read sslcert {}", cert.display()), e))?;
        let key = PrivateKeyDer::from_pem_file(key)
          .map_err(|e| tls_error(&format!("cannot read sslkey {}", key.display()), e))?;
        builder
          .with_client_auth_cert(chain, key)
          .map_err(|e| tls_error("the client certificate and key do not go together", e))?
      }
      _ => {
        return Err(Error::InvalidArgument(
          "sslcert and sslkey go together: give both or neither".into(),
        ))
      }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
  }

  fn webpki(
    &self,
    root: Option<&PathBuf>,
    provider: &Arc<CryptoProvider>,
  ) -> Result<Arc<WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    match root.filter(|path| path.as_os_str() != "system") {
      Some(path) => {
        let certs = CertificateDer::pem_file_iter(path)
          .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
          .map_err(|e| tls_error(&format!("cannot read sslrootcert {}", path.display()), e))?;
        let (_, refused) = roots.add_parsable_certificates(certs);
        if roots.is_empty() || refused > 0 {
          return Err(Error::Armin(format!(
            "TLS: sslrootcert {} holds no usable CA certificate",
            path.display()
          )));
        }
      }
      None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
      .build()
      .map_err(|e| tls_error("cannot set up certificate checks", e))
  }
}

fn tls_error(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> Error {
  Error::storage(format!("TLS: {what}: {error}"), error)
}

/// `prefer`, and `require` without a root: encrypted, but any certificate
/// will do (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
  fn verify_server_cert(
    &self,
    _end_entity: &CertificateDer<'_>,
    _intermediates: &[CertificateDer<'_>],
    _server_name: &ServerName<'_>,
    _ocsp_response: &[u8],
    _now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error> {
    Ok(ServerCertVerified::assertion())
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls12_signature(
      message,
      cert,
      dss,
      &self.0.signature_verification_algorithms,
    )
  }

  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(
      message,
      cert,
      dss,
      &self.0.signature_verification_algorithms,
    )
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.0.signature_verification_algorithms.supported_schemes()
  }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the
/// certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
  fn verify_server_cert(
    &self,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
  ) -> std::result::Result<ServerCertVerified, rustls::Error> {
    match self
      .0
      .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    {
      Err(rustls::Error::InvalidCertificate(
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
      )) => Ok(ServerCertVerified::assertion()),
      checked => checked,
    }
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    self.0.verify_tls12_signature(message, cert, dss)
  }

  fn verify_tls13_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    self.0.verify_tls13_signature(message, cert, dss)
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.0.supported_verify_schemes()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn tls_parameters_are_taken_out_and_read_as_libpq_does() {
    let (url, settings) = take_parameters(
      "postgres://me@db/x?sslmode=verify-full&options=-c%20a%3Db&sslrootcert=%2Fca%20dir%2Fca.pem",
    )
    .unwrap();
    assert_eq!(url, "postgres://me@db/x?options=-c%20a%3Db");
    assert_eq!(settings.mode, SslMode::VerifyFull);
    assert_eq!(settings.root_cert, Some(PathBuf::from("/ca dir/ca.pem")));
    let (url, settings) = take_parameters("postgres://me@db/x").unwrap();
    assert_eq!(
      (url.as_str(), settings.mode),
      ("postgres://me@db/x", SslMode::Prefer)
    );
    let (url, settings) = take_parameters("postgres://db/x?sslmode=disable").unwrap();
    assert_eq!(
      (url.as_str(), settings.mode),
      ("postgres://db/x", SslMode::Disable)
    );
    assert!(settings.connector().unwrap().is_none());
    for bad in [
      "postgres://db/x?sslmode=sometimes",
      "postgres://db/x?sslcert=%zz",
    ] {
      assert_eq!(take_parameters(bad).unwrap_err().code(), "INVALID_ARGUMENT");
    }
    let (_, half) = take_parameters("postgres://db/x?sslcert=/c.pem").unwrap();
    assert_eq!(half.connector().err().unwrap().code(), "INVALID_ARGUMENT");
    let (_, missing) =
      take_parameters("postgres://db/x?sslmode=verify-ca&sslrootcert=/no/such.pem").unwrap();
    let error = missing.connector().err().unwrap();
    assert_eq!(error.code(), "STORAGE_ERROR");
    assert!(error.to_string().contains("TLS"), "{error}");
  }
}

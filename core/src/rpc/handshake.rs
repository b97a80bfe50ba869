//! The connection handshake: protocol version check and mutual proof of
//! the cluster token, before a single frame is read.
//!
//! ```text
//! client -> server : "TRPE" | version u8 | client_nonce [16]
//! server -> client : CHALLENGE | version u8 | server_nonce [16] | server_mac [32]
//!                    (or BAD_VERSION | version u8, then close)
//! client -> server : client_mac [32]
//! server -> client : ACCEPTED (or REFUSED, then close)
//! mac = HMAC-SHA256(token, label | version | client_nonce | server_nonce)
//! ```
//!
//! During a token rotation a process holds its token and the ones it also
//! accepts ([`super::RpcConfig::also_accept`]): a server proves itself with
//! its own token and accepts a client's proof made with any of them; a
//! client accepts a server's proof made with any of its tokens and answers
//! with the one that matched. So a rolling restart to `--token OLD
//! --accept-token NEW`, then to `--token NEW --accept-token OLD`, then to
//! `--token NEW` changes the token with every pair of nodes able to talk
//! at every step (OPERATIONS.md).
//!
//! The token itself never crosses the wire, the nonces make every proof
//! fresh, and the client checks the server's proof too, so a process that
//! does not know the token can neither join nor impersonate a member. (The
//! frames after the handshake are not encrypted: run clusters on a trusted
//! network, as with Ray.)

use std::io;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::ClusterToken;

pub(crate) const MAGIC: [u8; 4] = *b"TRPE";
pub const PROTOCOL_VERSION: u8 = 1;

const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
const CHALLENGE: u8 = 0;
const BAD_VERSION: u8 = 1;
const ACCEPTED: u8 = 2;
const REFUSED: u8 = 3;
const SERVER_LABEL: &[u8] = b"troupe-rpc server";
const CLIENT_LABEL: &[u8] = b"troupe-rpc client";

type Nonce = [u8; NONCE_LEN];

/// How a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("not a Troupe RPC peer (bad magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("peer speaks protocol version {theirs}, we speak {ours}")]
    VersionMismatch { ours: u8, theirs: u8 },
    #[error("peer could not prove it holds the cluster token")]
    BadToken,
    #[error("unexpected handshake byte {0}")]
    Protocol(u8),
    #[error("io during handshake: {0}")]
    Io(#[from] io::Error),
}

fn mac(token: &ClusterToken, label: &[u8], client: &Nonce, server: &Nonce) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(label);
    m.update(&[PROTOCOL_VERSION]);
    m.update(client);
    m.update(server);
    m
}

fn proof(token: &ClusterToken, label: &[u8], client: &Nonce, server: &Nonce) -> [u8; MAC_LEN] {
    mac(token, label, client, server)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a peer's proof.
fn verify(token: &ClusterToken, label: &[u8], client: &Nonce, server: &Nonce, got: &[u8]) -> bool {
    mac(token, label, client, server).verify_slice(got).is_ok()
}

/// The first of `tokens` the peer's proof was made with.
fn matching<'t>(
    tokens: &'t [ClusterToken],
    label: &[u8],
    client: &Nonce,
    server: &Nonce,
    got: &[u8],
) -> Option<&'t ClusterToken> {
    tokens
        .iter()
        .find(|token| verify(token, label, client, server, got))
}

/// Runs the client side on a fresh connection, holding `tokens` (its own
/// first, then the ones it also accepts).
pub(crate) async fn client<S>(stream: &mut S, tokens: &[ClusterToken]) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_nonce: Nonce = rand::random();
    let mut hello = [0u8; 4 + 1 + NONCE_LEN];
    hello[..4].copy_from_slice(&MAGIC);
    hello[4] = PROTOCOL_VERSION;
    hello[5..].copy_from_slice(&client_nonce);
    stream.write_all(&hello).await?;

    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    match head[0] {
        CHALLENGE => {}
        BAD_VERSION => {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: head[1],
            })
        }
        other => return Err(HandshakeError::Protocol(other)),
    }
    let mut rest = [0u8; NONCE_LEN + MAC_LEN];
    stream.read_exact(&mut rest).await?;
    let server_nonce: Nonce = rest[..NONCE_LEN].try_into().expect("fixed size");
    let Some(token) = matching(
        tokens,
        SERVER_LABEL,
        &client_nonce,
        &server_nonce,
        &rest[NONCE_LEN..],
    ) else {
        return Err(HandshakeError::BadToken);
    };
    let mine = proof(token, CLIENT_LABEL, &client_nonce, &server_nonce);
    stream.write_all(&mine).await?;
    let mut verdict = [0u8; 1];
    match stream.read_exact(&mut verdict).await {
        Ok(_) if verdict[0] == ACCEPTED => Ok(()),
        Ok(_) if verdict[0] == REFUSED => Err(HandshakeError::BadToken),
        Ok(_) => Err(HandshakeError::Protocol(verdict[0])),
        // A server that refuses may close before we read the verdict.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(HandshakeError::BadToken),
        Err(e) => Err(e.into()),
    }
}

/// Runs the server side on an accepted connection, proving itself with
/// `tokens[0]` and accepting any of `tokens`. On error the caller closes
/// the connection; nothing from it has been dispatched.
pub(crate) async fn server<S>(stream: &mut S, tokens: &[ClusterToken]) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; 4 + 1 + NONCE_LEN];
    stream.read_exact(&mut hello[..5]).await?;
    let magic: [u8; 4] = hello[..4].try_into().expect("fixed size");
    if magic != MAGIC {
        return Err(HandshakeError::BadMagic(magic));
    }
    if hello[4] != PROTOCOL_VERSION {
        // Best effort: tell the peer which version we speak, then close.
        let _ = stream.write_all(&[BAD_VERSION, PROTOCOL_VERSION]).await;
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello[4],
        });
    }
    stream.read_exact(&mut hello[5..]).await?;
    let client_nonce: Nonce = hello[5..].try_into().expect("fixed size");
    let server_nonce: Nonce = rand::random();
    let mut challenge = [0u8; 2 + NONCE_LEN + MAC_LEN];
    challenge[0] = CHALLENGE;
    challenge[1] = PROTOCOL_VERSION;
    challenge[2..2 + NONCE_LEN].copy_from_slice(&server_nonce);
    challenge[2 + NONCE_LEN..].copy_from_slice(&proof(
        &tokens[0],
        SERVER_LABEL,
        &client_nonce,
        &server_nonce,
    ));
    stream.write_all(&challenge).await?;
    let mut theirs = [0u8; MAC_LEN];
    stream.read_exact(&mut theirs).await?;
    if matching(tokens, CLIENT_LABEL, &client_nonce, &server_nonce, &theirs).is_none() {
        let _ = stream.write_all(&[REFUSED]).await;
        return Err(HandshakeError::BadToken);
    }
    stream.write_all(&[ACCEPTED]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(client_token: &str, server_token: &str) -> (bool, bool) {
        rotating(&[client_token], &[server_token]).await
    }

    /// Each side's tokens, its own first.
    async fn rotating(client_tokens: &[&str], server_tokens: &[&str]) -> (bool, bool) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let own = |list: &[&str]| -> Vec<ClusterToken> {
            list.iter().map(|t| ClusterToken::new(t).unwrap()).collect()
        };
        let (ct, st) = (own(client_tokens), own(server_tokens));
        let (c, s) = tokio::join!(async move { client(&mut a, &ct).await }, async move {
            server(&mut b, &st).await
        });
        (c.is_ok(), s.is_ok())
    }

    #[tokio::test]
    async fn every_step_of_a_rolling_token_rotation_connects_every_pair() {
        // The three configurations a node passes through, old to new.
        let steps: [&[&str]; 4] = [&["old"], &["old", "new"], &["new", "old"], &["new"]];
        // During a rolling restart, nodes are in two adjacent steps at once.
        for pair in steps.windows(2) {
            for a in pair {
                for b in pair {
                    assert_eq!(rotating(a, b).await, (true, true), "{a:?} -> {b:?}");
                }
            }
        }
        // Skipping a step breaks connections: old-only and new-only nodes
        // share no token.
        assert_eq!(rotating(&["old"], &["new"]).await, (false, false));
        assert!(!rotating(&["old"], &["new", "old"]).await.0);
    }

    #[tokio::test]
    async fn same_token_is_accepted_by_both_sides() {
        assert_eq!(run("secret", "secret").await, (true, true));
    }

    #[tokio::test]
    async fn different_token_is_refused_by_both_sides() {
        assert_eq!(run("secret", "other").await, (false, false));
    }

    #[tokio::test]
    async fn bad_magic_and_version_are_reported() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let token = ClusterToken::new("t").unwrap();
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            server(&mut b, std::slice::from_ref(&token)).await,
            Err(HandshakeError::BadMagic(m)) if &m == b"GET "
        ));

        let (mut a, mut b) = tokio::io::duplex(1024);
        let srv = tokio::spawn(async move { server(&mut b, std::slice::from_ref(&token)).await });
        let mut hello = MAGIC.to_vec();
        hello.push(PROTOCOL_VERSION + 1);
        hello.extend_from_slice(&[0; NONCE_LEN]);
        a.write_all(&hello).await.unwrap();
        let mut reply = [0u8; 2];
        a.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [BAD_VERSION, PROTOCOL_VERSION]);
        assert!(matches!(
            srv.await.unwrap(),
            Err(HandshakeError::VersionMismatch { .. })
        ));
    }

    #[test]
    fn proofs_depend_on_every_input() {
        let t = ClusterToken::new("t").unwrap();
        let base = proof(&t, CLIENT_LABEL, &[1; 16], &[2; 16]);
        assert_ne!(base, proof(&t, SERVER_LABEL, &[1; 16], &[2; 16]));
        assert_ne!(base, proof(&t, CLIENT_LABEL, &[0; 16], &[2; 16]));
        assert_ne!(base, proof(&t, CLIENT_LABEL, &[1; 16], &[0; 16]));
        let other = ClusterToken::new("u").unwrap();
        assert_ne!(base, proof(&other, CLIENT_LABEL, &[1; 16], &[2; 16]));
        assert!(verify(&t, CLIENT_LABEL, &[1; 16], &[2; 16], &base));
    }
}

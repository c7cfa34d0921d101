//! Framing for the privval protocol: each message is a uvarint length prefix
//! followed by that many bytes of protobuf (CometBFT's `protoio` delimited
//! format, as `libs/protoio/reader.go` reads it).
//!
//! This module only moves frames; it never looks inside a body. [`check`]
//! measures a frame without allocating, so a peer that declares a huge
//! length costs nothing; [`FrameReader`] skips over an oversized frame in
//! bounded chunks so the connection stays in step.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame body accepted by default. CometBFT itself caps signer
/// messages at 10 KiB; this leaves ample room.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// A uvarint never needs more than ten bytes for a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// How much is read from the connection at a time, also while skipping the
/// body of an oversized frame.
const CHUNK: usize = 8 * 1024;

/// Why a frame or a message body could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// More bytes are needed before the frame is complete.
    #[error("incomplete frame")]
    Incomplete,
    /// The frame declares a body longer than the limit.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Declared body length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The bytes are not a valid frame or message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Why [`FrameReader::read_frame`] returned no frame.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed, ended inside a frame, or sent a length prefix
    /// that cannot be parsed (after which frames cannot be found again).
    /// The connection is dead.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// One frame was unusable, but it was consumed whole: the connection is
    /// still in step and the next frame can be read.
    #[error(transparent)]
    Codec(CodecError),
}

/// Reads the length prefix at the start of `buf`: `Ok(Some((header_len,
/// body_len)))`, `Ok(None)` when the prefix is not complete yet.
fn header(buf: &[u8]) -> Result<Option<(usize, u64)>, CodecError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(CodecError::Malformed(
                "frame length overflows 64 bits".into(),
            ));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(CodecError::Malformed(
            "frame length varint longer than 10 bytes".into(),
        ))
    } else {
        Ok(None)
    }
}

/// Measures the frame at the start of `buf` without allocating.
///
/// # Errors
///
/// [`CodecError::Incomplete`] when more bytes are needed,
/// [`CodecError::TooLarge`] when the declared length exceeds `max` (known
/// as soon as the prefix is complete), [`CodecError::Malformed`] for a
/// length prefix that is not a valid 64-bit uvarint.
pub fn check(buf: &[u8], max: usize) -> Result<(usize, usize), CodecError> {
    let (header_len, len) = header(buf)?.ok_or(CodecError::Incomplete)?;
    let body_len = match usize::try_from(len) {
        Ok(n) if n <= max => n,
        _ => return Err(CodecError::TooLarge { len, max }),
    };
    if buf.len() - header_len < body_len {
        return Err(CodecError::Incomplete);
    }
    Ok((header_len, body_len))
}

/// Prefixes `body` with its uvarint length.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + MAX_VARINT_LEN);
    let mut len = body.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(body);
    out
}

/// Reads length-delimited frames from a byte stream.
///
/// [`FrameReader::read_frame`] is cancel-safe: dropping its future (in a
/// `select!`) loses no bytes, even while an oversized frame is being
/// skipped; the next call carries on where it stopped.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes read but not yet handed out. Never holds more than one frame
    /// of at most `max` bytes plus one chunk.
    buf: Vec<u8>,
    /// The oversized frame being skipped: (declared length, bytes left).
    skipping: Option<(u64, u64)>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max` body bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max,
            buf: Vec::new(),
            skipping: None,
        }
    }

    /// Reads the next frame body.
    ///
    /// Returns `Ok(None)` on a clean end of stream between frames.
    ///
    /// # Errors
    ///
    /// [`ReadError::Io`] when the stream fails, ends inside a frame or
    /// carries an unparsable length prefix. [`ReadError::Codec`] with
    /// [`CodecError::TooLarge`] for an oversized frame, reported only after
    /// its body has been read and discarded, so the next call reads the
    /// frame after it.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some((len, _)) = self.skipping {
                self.skip().await?;
                self.skipping = None;
                return Err(ReadError::Codec(CodecError::TooLarge {
                    len,
                    max: self.max,
                }));
            }
            match check(&self.buf, self.max) {
                Ok((header_len, body_len)) => {
                    let end = header_len + body_len;
                    let body = self.buf[header_len..end].to_vec();
                    self.buf.drain(..end);
                    return Ok(Some(body));
                }
                Err(CodecError::Incomplete) => {
                    if self.fill().await? == 0 {
                        return if self.buf.is_empty() {
                            Ok(None)
                        } else {
                            Err(eof_in_frame().into())
                        };
                    }
                }
                Err(CodecError::TooLarge { len, .. }) => {
                    // check() reported TooLarge, so the prefix is complete.
                    let header_len = match header(&self.buf) {
                        Ok(Some((header_len, _))) => header_len,
                        _ => return Err(io::Error::other("lost frame header").into()),
                    };
                    self.buf.drain(..header_len);
                    self.skipping = Some((len, len));
                }
                Err(CodecError::Malformed(reason)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, reason).into());
                }
            }
        }
    }

    /// Gives back the underlying stream; buffered bytes are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads one chunk into the buffer; returns how many bytes came.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; CHUNK];
        let n = self.inner.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Discards the rest of the oversized frame in `skipping`: first what
    /// is buffered, then what is still to come, one bounded chunk at a
    /// time. Progress is recorded after every read, so a cancelled call
    /// loses nothing.
    async fn skip(&mut self) -> io::Result<()> {
        let Some((len, mut remaining)) = self.skipping else {
            return Ok(());
        };
        let buffered = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        self.buf.drain(..buffered);
        remaining -= buffered as u64;
        self.skipping = Some((len, remaining));
        let mut chunk = [0u8; CHUNK];
        while remaining > 0 {
            let want = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            let n = self.inner.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(eof_in_frame());
            }
            remaining -= n as u64;
            self.skipping = Some((len, remaining));
        }
        Ok(())
    }
}

fn eof_in_frame() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed inside a frame",
    )
}

/// Writes `body` as one frame and flushes once.
///
/// # Errors
///
/// Any error of the underlying writer.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> io::Result<()> {
    w.write_all(&encode(body)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_check_agree() {
        for len in [0usize, 1, 127, 128, 300, 16_384, 70_000] {
            let body = vec![7u8; len];
            let frame = encode(&body);
            let (h, n) = check(&frame, DEFAULT_MAX_FRAME).expect("whole frame");
            assert_eq!(n, len);
            assert_eq!(&frame[h..], &body[..]);
            if !frame.is_empty() {
                assert_eq!(
                    check(&frame[..frame.len() - 1], DEFAULT_MAX_FRAME),
                    Err(CodecError::Incomplete)
                );
            }
        }
    }

    #[test]
    fn check_reports_incomplete_prefixes() {
        assert_eq!(check(&[], 10), Err(CodecError::Incomplete));
        assert_eq!(check(&[0x80], 1000), Err(CodecError::Incomplete));
        assert_eq!(check(&[0x05, 1, 2], 10), Err(CodecError::Incomplete));
        assert_eq!(check(&[0x00], 10), Ok((1, 0)));
    }

    #[test]
    fn check_refuses_oversized_frames_early() {
        assert_eq!(
            check(&[0x0b], 10),
            Err(CodecError::TooLarge { len: 11, max: 10 })
        );
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            check(&huge, DEFAULT_MAX_FRAME),
            Err(CodecError::TooLarge {
                len: u64::MAX,
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn check_refuses_bad_varints() {
        let long = [0x80u8; 11];
        assert!(matches!(check(&long, 10), Err(CodecError::Malformed(_))));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            check(&overflow, 10),
            Err(CodecError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn reader_reads_frames_then_clean_eof() {
        let mut wire = encode(b"one");
        wire.extend(encode(b""));
        wire.extend(encode(&[9u8; 20_000]));
        let mut r = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME);
        assert_eq!(r.read_frame().await.expect("one"), Some(b"one".to_vec()));
        assert_eq!(r.read_frame().await.expect("empty"), Some(Vec::new()));
        assert_eq!(r.read_frame().await.expect("big"), Some(vec![9u8; 20_000]));
        assert!(r.read_frame().await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn reader_skips_oversized_frames_and_stays_in_step() {
        let mut wire = encode(&[1u8; 50_000]);
        wire.extend(encode(b"next"));
        let mut r = FrameReader::new(&wire[..], 100);
        match r.read_frame().await {
            Err(ReadError::Codec(CodecError::TooLarge {
                len: 50_000,
                max: 100,
            })) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.read_frame().await.expect("next"), Some(b"next".to_vec()));
        assert!(r.read_frame().await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn reader_survives_cancellation_while_skipping() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::new(rx, 100);
        let mut first = encode(&[1u8; 1000]);
        let rest = first.split_off(300);
        tx.write_all(&first).await.expect("write");
        // The reader is cancelled while it waits for the rest of the body.
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read_frame()).await;
        assert!(cancelled.is_err());
        tx.write_all(&rest).await.expect("write");
        tx.write_all(&encode(b"after")).await.expect("write");
        drop(tx);
        assert!(matches!(
            r.read_frame().await,
            Err(ReadError::Codec(CodecError::TooLarge {
                len: 1000,
                max: 100
            }))
        ));
        assert_eq!(
            r.read_frame().await.expect("after"),
            Some(b"after".to_vec())
        );
        assert!(r.read_frame().await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn reader_reports_eof_inside_a_frame() {
        let wire = encode(b"truncated");
        let mut r = FrameReader::new(&wire[..5], DEFAULT_MAX_FRAME);
        assert!(matches!(r.read_frame().await, Err(ReadError::Io(_))));
        // Also while skipping an oversized body.
        let wire = encode(&[0u8; 500]);
        let mut r = FrameReader::new(&wire[..200], 10);
        assert!(matches!(r.read_frame().await, Err(ReadError::Io(_))));
    }

    #[tokio::test]
    async fn reader_treats_bad_prefix_as_dead_connection() {
        let wire = [0x80u8; 12];
        let mut r = FrameReader::new(&wire[..], 10);
        assert!(matches!(r.read_frame().await, Err(ReadError::Io(_))));
    }

    #[tokio::test]
    async fn write_frame_writes_prefix_and_body() {
        let mut out = Vec::new();
        write_frame(&mut out, b"abc").await.expect("write");
        assert_eq!(out, vec![3, b'a', b'b', b'c']);
    }
}

//! Opus (RFC 6716) through libopus (Debian's `libopus-dev`, via the
//! `opus` crate), and the RFC 7587 §6.1 `a=fmtp` parameters.
//!
//! Shapes: 48 kHz 16-bit linear audio, interleaved when stereo; the RTP
//! clock is always 48000 (RFC 7587 §4.1). A 20 ms frame is 960 samples per
//! channel; an encoded frame is at most [`MAX_PACKET`] bytes. Encoders here
//! are mono (`Application::Voip`); decoders are mono or stereo.
//!
//! In-band FEC (RFC 6716 §2.1.7): when packet *n* is lost and *n + 1* has
//! arrived, [`OpusDecoder::decode_fec`] recovers *n* from the LBRR data in
//! *n + 1*. Without it, [`OpusDecoder::conceal`] runs libopus's own PLC.
//! DTX (RFC 7587 §3.1.3): with `usedtx=1` the encoder sends 1–2 byte
//! packets (or, in libopus, packets the caller may drop) during silence.

use std::fmt;

/// Largest Opus packet this crate writes, bytes: one Ethernet-MTU datagram
/// (RFC 6716 §3.2.1 bounds one frame at 1275 bytes; 32 kbit/s for 20 ms is
/// 80).
pub const MAX_PACKET: usize = 1500;

/// Largest decoded frame per channel: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_FRAME: usize = 5760;

/// The RFC 7587 §6.1 parameters of an Opus `a=fmtp` line, plus `ptime` and
/// `minptime` (which belong in `a=ptime`/`a=minptime` but some peers put in
/// fmtp). `None` is "absent", whose meaning is the RFC's default.
///
/// Values outside the RFC's ranges are dropped as absent: `maxplaybackrate`
/// and `sprop-maxcapturerate` 8000..=48000 Hz, `maxaveragebitrate`
/// 6000..=510000 bit/s, `ptime`/`minptime` 3..=120 ms; the flags accept
/// only `0` and `1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpusFmtp {
    /// `maxplaybackrate`, Hz: the highest rate the receiver renders.
    pub maxplaybackrate: Option<u32>,
    /// `sprop-maxcapturerate`, Hz: the highest rate the sender captures.
    pub sprop_maxcapturerate: Option<u32>,
    /// `stereo`: the receiver prefers stereo (default 0).
    pub stereo: Option<bool>,
    /// `sprop-stereo`: the sender may send stereo (default 0).
    pub sprop_stereo: Option<bool>,
    /// `maxaveragebitrate`, bit/s.
    pub maxaveragebitrate: Option<u32>,
    /// `cbr`: the receiver wants constant bitrate (default 0).
    pub cbr: Option<bool>,
    /// `useinbandfec`: the receiver can use in-band FEC (default 0).
    pub useinbandfec: Option<bool>,
    /// `usedtx`: the receiver prefers DTX (default 0).
    pub usedtx: Option<bool>,
    /// `ptime`, ms.
    pub ptime: Option<u32>,
    /// `minptime`, ms.
    pub minptime: Option<u32>,
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn ranged(v: &str, lo: u32, hi: u32) -> Option<u32> {
    // At most 10 digits: u32::from_str rejects overflow, a sign, spaces.
    v.parse::<u32>().ok().filter(|x| (lo..=hi).contains(x))
}

impl OpusFmtp {
    /// Parses the parameter part of `a=fmtp:<pt> <params>`: `key=value`
    /// pairs separated by `;` (RFC 8866 §6.15), whitespace around each
    /// trimmed, keys compared case-insensitively. Unknown keys, keys
    /// without `=` and out-of-range values are ignored (RFC 7587 §6.1:
    /// unknown parameters are ignored), so this never fails and never
    /// panics on any input.
    pub fn parse(params: &str) -> Self {
        let mut f = OpusFmtp::default();
        for item in params.split(';') {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let eq = |name: &str| k.eq_ignore_ascii_case(name);
            if eq("maxplaybackrate") {
                f.maxplaybackrate = ranged(v, 8000, 48000);
            } else if eq("sprop-maxcapturerate") {
                f.sprop_maxcapturerate = ranged(v, 8000, 48000);
            } else if eq("stereo") {
                f.stereo = flag(v);
            } else if eq("sprop-stereo") {
                f.sprop_stereo = flag(v);
            } else if eq("maxaveragebitrate") {
                f.maxaveragebitrate = ranged(v, 6000, 510_000);
            } else if eq("cbr") {
                f.cbr = flag(v);
            } else if eq("useinbandfec") {
                f.useinbandfec = flag(v);
            } else if eq("usedtx") {
                f.usedtx = flag(v);
            } else if eq("ptime") {
                f.ptime = ranged(v, 3, 120);
            } else if eq("minptime") {
                f.minptime = ranged(v, 3, 120);
            }
        }
        f
    }
}

impl fmt::Display for OpusFmtp {
    /// The parameters present, in RFC 7587 §6.1 order, `;`-separated with
    /// no spaces (e.g. `minptime=10;useinbandfec=1`); empty when none is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut num = |f: &mut fmt::Formatter<'_>, k: &str, v: Option<u32>| -> fmt::Result {
            if let Some(v) = v {
                write!(f, "{sep}{k}={v}")?;
                sep = ";";
            }
            Ok(())
        };
        let b = |v: Option<bool>| v.map(u32::from);
        num(f, "maxplaybackrate", self.maxplaybackrate)?;
        num(f, "sprop-maxcapturerate", self.sprop_maxcapturerate)?;
        num(f, "stereo", b(self.stereo))?;
        num(f, "sprop-stereo", b(self.sprop_stereo))?;
        num(f, "maxaveragebitrate", self.maxaveragebitrate)?;
        num(f, "cbr", b(self.cbr))?;
        num(f, "useinbandfec", b(self.useinbandfec))?;
        num(f, "usedtx", b(self.usedtx))?;
        num(f, "ptime", self.ptime)?;
        num(f, "minptime", self.minptime)
    }
}

/// A libopus call failed (its `OPUS_*` error, as the `opus` crate reports
/// it: bad argument, buffer too small, invalid packet, internal error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusError(pub String);

impl fmt::Display for OpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libopus: {}", self.0)
    }
}

impl std::error::Error for OpusError {}

fn err(e: opus::Error) -> OpusError {
    OpusError(e.to_string())
}

/// A mono 48 kHz Opus encoder (`OPUS_APPLICATION_VOIP`).
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl OpusEncoder {
    /// A mono 48 kHz VoIP encoder configured from the *receiver's* fmtp
    /// (`remote`, what the other side said it accepts):
    /// `useinbandfec=1` switches on in-band FEC (and tells the encoder to
    /// expect 10 % loss, without which libopus sends no LBRR data);
    /// `usedtx=1` switches on DTX; `maxaveragebitrate` sets the bitrate
    /// (default 32 kbit/s; at most 64 kbit/s, plenty for mono voice);
    /// `maxplaybackrate` caps the audio bandwidth
    /// (≤ 8000 narrowband, ≤ 12000 mediumband, ≤ 16000 wideband, ≤ 24000
    /// super-wideband); `cbr=1` switches VBR off.
    ///
    /// # Errors
    /// [`OpusError`] when libopus refuses the state or a control call.
    pub fn new(remote: &OpusFmtp) -> Result<Self, OpusError> {
        let mut inner = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(err)?;
        let fec = remote.useinbandfec == Some(true);
        inner.set_inband_fec(fec).map_err(err)?;
        inner
            .set_packet_loss_perc(if fec { 10 } else { 0 })
            .map_err(err)?;
        inner.set_dtx(remote.usedtx == Some(true)).map_err(err)?;
        let bitrate = remote.maxaveragebitrate.unwrap_or(32_000).min(64_000);
        inner
            .set_bitrate(opus::Bitrate::Bits(bitrate as i32))
            .map_err(err)?;
        if remote.cbr == Some(true) {
            inner.set_vbr(false).map_err(err)?;
        }
        if let Some(rate) = remote.maxplaybackrate {
            let bw = match rate {
                0..=8000 => opus::Bandwidth::Narrowband,
                8001..=12000 => opus::Bandwidth::Mediumband,
                12001..=16000 => opus::Bandwidth::Wideband,
                16001..=24000 => opus::Bandwidth::Superwideband,
                _ => opus::Bandwidth::Fullband,
            };
            inner.set_max_bandwidth(bw).map_err(err)?;
        }
        Ok(Self { inner })
    }

    /// Encodes one frame of `pcm` (48 kHz mono; 120, 240, 480, 960, 1920
    /// or 2880 samples: 2.5–60 ms) into `out`, returning the packet's
    /// length. With DTX on, a silent frame may come back as 1–2 bytes.
    ///
    /// # Errors
    /// [`OpusError`] for another frame size or an `out` too small.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        self.inner.encode(pcm, out).map_err(err)
    }

    /// The encoder's look-ahead, samples at 48 kHz (libopus
    /// `OPUS_GET_LOOKAHEAD`: 312 for VoIP at 48 kHz in libopus 1.3).
    ///
    /// # Errors
    /// [`OpusError`] if the control call fails.
    pub fn lookahead(&mut self) -> Result<usize, OpusError> {
        let n = self.inner.get_lookahead().map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// A 48 kHz Opus decoder, mono or stereo (interleaved output).
pub struct OpusDecoder {
    inner: opus::Decoder,
    channels: usize,
}

impl OpusDecoder {
    /// A decoder of `channels` (1 or 2, anything else is taken as 1)
    /// channels at 48 kHz.
    ///
    /// # Errors
    /// [`OpusError`] when libopus refuses the state.
    pub fn new(channels: usize) -> Result<Self, OpusError> {
        let (ch, n) = if channels == 2 {
            (opus::Channels::Stereo, 2)
        } else {
            (opus::Channels::Mono, 1)
        };
        let inner = opus::Decoder::new(48000, ch).map_err(err)?;
        Ok(Self { inner, channels: n })
    }

    /// Channels decoded: 1 or 2.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decodes `packet` into `out` (interleaved), returning the samples
    /// *per channel* written; `out` needs room for the whole packet
    /// ([`MAX_FRAME`] × channels is always enough).
    ///
    /// # Errors
    /// [`OpusError`] for a malformed packet or an `out` too small.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError("empty packet".into()));
        }
        self.inner.decode(packet, out, false).map_err(err)
    }

    /// Recovers the packet *before* `next` from `next`'s in-band FEC
    /// (RFC 6716 §2.1.7), writing exactly `out.len() / channels` samples
    /// per channel (the lost packet's duration, a multiple of 2.5 ms).
    /// When `next` carries no FEC data libopus runs its PLC instead.
    ///
    /// # Errors
    /// [`OpusError`] for a malformed `next` or a bad duration.
    pub fn decode_fec(&mut self, next: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if next.is_empty() {
            return self.conceal(out);
        }
        self.inner.decode(next, out, true).map_err(err)
    }

    /// libopus packet-loss concealment: fills `out.len() / channels`
    /// samples per channel (a multiple of 2.5 ms) from the decoder's state.
    ///
    /// # Errors
    /// [`OpusError`] for a bad duration.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        self.inner.decode(&[], out, false).map_err(err)
    }

    /// Samples per channel in `packet` (RFC 6716 §3.1 TOC and framing).
    ///
    /// # Errors
    /// [`OpusError`] for a malformed packet.
    pub fn samples_in(&self, packet: &[u8]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError("empty packet".into()));
        }
        self.inner.get_nb_samples(packet).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 48000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                    + 6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn fmtp_parses_every_rfc7587_parameter() {
        let f = OpusFmtp::parse(
            "maxplaybackrate=16000; sprop-maxcapturerate=16000;stereo=1;sprop-stereo=0;\
             maxaveragebitrate=20000;cbr=1;useinbandfec=1;usedtx=1;ptime=40;minptime=10",
        );
        assert_eq!(f.maxplaybackrate, Some(16000));
        assert_eq!(f.sprop_maxcapturerate, Some(16000));
        assert_eq!(f.stereo, Some(true));
        assert_eq!(f.sprop_stereo, Some(false));
        assert_eq!(f.maxaveragebitrate, Some(20000));
        assert_eq!(f.cbr, Some(true));
        assert_eq!(f.useinbandfec, Some(true));
        assert_eq!(f.usedtx, Some(true));
        assert_eq!(f.ptime, Some(40));
        assert_eq!(f.minptime, Some(10));
        // Generation round-trips through the parser.
        assert_eq!(OpusFmtp::parse(&f.to_string()), f);
        assert_eq!(
            OpusFmtp::parse("minptime=10;useinbandfec=1").to_string(),
            "useinbandfec=1;minptime=10"
        );
    }

    #[test]
    fn fmtp_ignores_junk_and_out_of_range_values() {
        let f = OpusFmtp::parse("USEINBANDFEC=1;stereo=2;maxaveragebitrate=99999999999;foo;=;x=y;ptime=-5;maxplaybackrate=4000");
        assert_eq!(f.useinbandfec, Some(true));
        assert_eq!(f.stereo, None);
        assert_eq!(f.maxaveragebitrate, None);
        assert_eq!(f.ptime, None);
        assert_eq!(f.maxplaybackrate, None);
        assert_eq!(OpusFmtp::parse(""), OpusFmtp::default());
        assert_eq!(OpusFmtp::default().to_string(), "");
    }

    #[test]
    fn fec_recovers_a_lost_packet_better_than_plc() {
        let pcm = tone(48000);
        let fmtp = OpusFmtp::parse("useinbandfec=1");
        let mut enc = OpusEncoder::new(&fmtp).unwrap();
        let packets: Vec<Vec<u8>> = pcm
            .chunks(960)
            .map(|c| {
                let mut out = [0u8; MAX_PACKET];
                let n = enc.encode(c, &mut out).unwrap();
                out[..n].to_vec()
            })
            .collect();
        // Decode every packet once to find the reference output of packet 30.
        let run = |lost: usize, fec: bool| -> Vec<i16> {
            let mut dec = OpusDecoder::new(1).unwrap();
            let mut all = Vec::new();
            let mut buf = [0i16; MAX_FRAME];
            for (i, p) in packets.iter().enumerate() {
                let n = if i == lost {
                    if fec {
                        dec.decode_fec(&packets[i + 1], &mut buf[..960]).unwrap()
                    } else {
                        dec.conceal(&mut buf[..960]).unwrap()
                    }
                } else {
                    dec.decode(p, &mut buf).unwrap()
                };
                assert_eq!(n, 960);
                all.extend_from_slice(&buf[..n]);
            }
            all
        };
        let clean = run(usize::MAX, false);
        let err = |v: &[i16]| -> f64 {
            v[30 * 960..31 * 960]
                .iter()
                .zip(&clean[30 * 960..31 * 960])
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum()
        };
        let with_fec = err(&run(30, true));
        let with_plc = err(&run(30, false));
        assert!(
            with_fec < with_plc,
            "FEC error {with_fec} vs PLC {with_plc}"
        );
    }

    #[test]
    fn dtx_shrinks_silence_and_samples_in_reads_the_toc() {
        let mut enc = OpusEncoder::new(&OpusFmtp::parse("usedtx=1")).unwrap();
        let silence = [0i16; 960];
        let mut out = [0u8; MAX_PACKET];
        let mut sizes = Vec::new();
        for _ in 0..50 {
            sizes.push(enc.encode(&silence, &mut out).unwrap());
        }
        // After the encoder settles, DTX frames are 1–2 bytes, with a
        // comfort-noise update every 400 ms.
        let dtx = sizes[20..].iter().filter(|&&n| n <= 2).count();
        assert!(dtx >= 25, "{sizes:?}");
        let mut enc = OpusEncoder::new(&OpusFmtp::default()).unwrap();
        let n = enc.encode(&tone(960), &mut out).unwrap();
        let dec = OpusDecoder::new(2).unwrap();
        assert_eq!(dec.samples_in(&out[..n]).unwrap(), 960);
        assert!(dec.samples_in(&[]).is_err());
        assert!(enc.lookahead().unwrap() > 0);
        assert!(enc.encode(&tone(100), &mut out).is_err());
    }

    #[test]
    fn stereo_decode_interleaves_two_channels() {
        let mut enc = OpusEncoder::new(&OpusFmtp::default()).unwrap();
        let mut dec = OpusDecoder::new(2).unwrap();
        assert_eq!(dec.channels(), 2);
        let mut out = [0u8; MAX_PACKET];
        let mut buf = [0i16; MAX_FRAME * 2];
        let n = enc.encode(&tone(960), &mut out).unwrap();
        assert_eq!(dec.decode(&out[..n], &mut buf).unwrap(), 960);
        assert!(
            dec.decode(&[0xff, 0xff, 0xff], &mut buf).is_err()
                || dec.decode(&[], &mut buf).is_err()
        );
    }
}

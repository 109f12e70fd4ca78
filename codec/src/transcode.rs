//! A sans-IO RTP transcoder: RTP packets of one codec in, RTP packets of
//! another out, with its own SSRC, sequence numbers and timestamps.
//!
//! Pipeline per input packet (DESIGN.md's stage 5, "decode → PLC/resample
//! → encode"):
//!
//! 1. Parse the RTP header (RFC 3550 §5.1; malformed → [`TranscodeError::Rtp`]).
//! 2. Sequence numbers: a duplicate or late packet (up to [`MAX_MISORDER`]
//!    behind the expected number) is dropped; a gap of up to [`MAX_CONCEALED`] packets is
//!    concealed (Opus: libopus PLC, and in-band FEC from the packet that
//!    arrived for the last lost one; G.711/G.722: [`crate::plc::Plc`]) at
//!    the last packet's duration; a longer gap, a jump further back, an
//!    SSRC change or a change of input codec restarts the timeline (a new
//!    talkspurt).
//! 3. Timestamps: a jump with no lost packet (silence suppression, DTX) is
//!    kept: the pending output is completed with silence and sent, and the
//!    output timestamp jumps by the same time in the output clock.
//! 4. Decode to linear PCM at the codec's rate, resample to the output
//!    codec's rate ([`crate::resample`], 10 ms chunks), and collect.
//! 5. Each whole output frame (`ptime` ms) is encoded into one packet:
//!    timestamps in the output codec's RTP clock, advancing by the frame's
//!    ticks; sequence numbers +1 a packet; M set on the first packet of
//!    each talkspurt (RFC 3551 §4.1). With Opus DTX, frames libopus
//!    marks as not to be sent (≤ 2 bytes) are skipped, their time kept.
//! 6. telephone-event (RFC 4733) passes through at once: payload type
//!    mapped, timestamp mapped onto the output timeline (one output
//!    timestamp per event), duration rescaled to the output clock.
//!
//! Output goes to a caller-owned [`OutPackets`], so a worker can run this
//! without an allocation per packet. The output timeline lags the input by
//! the resampler's delay (5 ms when rates differ). A resampler's last
//! < 10 ms of a talkspurt waits for the next talkspurt.

use crate::dtmf::{rescale_ticks, DtmfError, TelephoneEvent};
use crate::g711;
use crate::g722::{G722Decoder, G722Encoder, G722InitError};
use crate::opus::{OpusDecoder, OpusEncoder, OpusError, OpusFmtp, MAX_FRAME, MAX_PACKET};
use crate::packets::{Header, OutPackets};
use crate::plc::Plc;
use crate::resample::{ResampleError, Resampler};
use crate::Codec;
use tern_shared::rtp::{RtpError, RtpPacket};

/// Most lost packets concealed in one gap; a longer gap restarts the
/// timeline instead.
pub const MAX_CONCEALED: u16 = 5;

/// A packet at most this many sequence numbers behind the expected one is
/// late (dropped); further behind, the sender is taken to have restarted
/// its numbering (RFC 3550 §A.1's `MAX_MISORDER`).
pub const MAX_MISORDER: i16 = 100;

/// Largest input payload of G.711 or G.722, bytes: 120 ms (960 samples of
/// G.711, 1920 of G.722).
pub const MAX_WAVEFORM_PAYLOAD: usize = 960;

/// A timestamp jump with no loss longer than this (seconds) is taken as a
/// timestamp reset, not silence: the output then continues without a gap.
const MAX_SILENCE_S: i64 = 60;

/// What the transcoder is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Input payload types and their codecs (at least one; PTs 0..=127,
    /// each once).
    pub inputs: Vec<(u8, Codec)>,
    /// Input telephone-event PT, if any (its clock is the input audio's).
    pub input_dtmf: Option<u8>,
    /// Output codec (Opus output is mono).
    pub output: Codec,
    /// Output payload type.
    pub output_pt: u8,
    /// Output packet duration, ms: 10..=120 in steps of 10 for G.711 and
    /// G.722, one of 10, 20, 40, 60 for Opus.
    pub output_ptime_ms: u32,
    /// Output telephone-event PT; without it input events are dropped.
    pub output_dtmf: Option<u8>,
    /// The receiver's Opus fmtp (FEC, DTX, bitrate), for Opus output.
    pub opus_fmtp: OpusFmtp,
    /// Output SSRC (the caller draws it at random, RFC 3550 §8.1).
    pub ssrc: u32,
    /// First output sequence number (random, RFC 3550 §5.1).
    pub first_seq: u16,
    /// First output timestamp (random, RFC 3550 §5.1).
    pub first_ts: u32,
}

/// Why a [`Transcoder`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `inputs` is empty.
    NoInputs,
    /// A payload type is above 127 or listed twice (input, DTMF, output
    /// DTMF equal to output audio).
    BadPayloadType(u8),
    /// `output_ptime_ms` does not suit the output codec.
    BadPtime(u32),
    /// libopus refused an encoder or decoder.
    Opus(OpusError),
    /// spandsp refused a G.722 state.
    G722(G722InitError),
    /// No resampler between the rates.
    Resample(ResampleError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoInputs => f.write_str("no input codec"),
            ConfigError::BadPayloadType(pt) => {
                write!(f, "payload type {pt} out of range or used twice")
            }
            ConfigError::BadPtime(p) => write!(f, "ptime {p} ms does not suit the output codec"),
            ConfigError::Opus(e) => e.fmt(f),
            ConfigError::G722(e) => e.fmt(f),
            ConfigError::Resample(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why an input packet was refused. The transcoder's state is unchanged
/// by a refused packet except where noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    /// Not a valid RTP packet (RFC 3550 §5.1).
    Rtp(RtpError),
    /// A payload type not in the configuration.
    UnknownPayloadType(u8),
    /// A G.711/G.722 payload over [`MAX_WAVEFORM_PAYLOAD`] bytes.
    PayloadTooLong(usize),
    /// libopus could not decode the payload (the packet's time is then
    /// concealed, as a loss).
    Decode(OpusError),
    /// A telephone-event payload under 4 bytes.
    Dtmf(DtmfError),
    /// libopus could not encode a frame (the frame is dropped).
    Encode(OpusError),
    /// `out` had no room; the packets that did not fit are lost, the
    /// timeline continues.
    OutputFull,
}

impl std::fmt::Display for TranscodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranscodeError::Rtp(e) => e.fmt(f),
            TranscodeError::UnknownPayloadType(pt) => write!(f, "unknown payload type {pt}"),
            TranscodeError::PayloadTooLong(n) => write!(f, "payload of {n} bytes is over 120 ms"),
            TranscodeError::Decode(e) => write!(f, "decode: {e}"),
            TranscodeError::Dtmf(e) => e.fmt(f),
            TranscodeError::Encode(e) => write!(f, "encode: {e}"),
            TranscodeError::OutputFull => f.write_str("output buffer full"),
        }
    }
}

impl std::error::Error for TranscodeError {}

/// Counters, since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Input packets accepted (audio and events).
    pub packets_in: u64,
    /// Output packets written.
    pub packets_out: u64,
    /// Lost input packets concealed (PLC or FEC).
    pub concealed: u64,
    /// Of those, the last of a gap in an Opus stream, decoded with FEC
    /// asked of the packet after it (libopus falls back to its PLC when
    /// that packet carries no FEC data).
    pub fec_recovered: u64,
    /// Duplicate or late input packets dropped.
    pub late: u64,
    /// Timeline restarts (long gap, SSRC or codec change).
    pub resyncs: u64,
    /// Input telephone-events dropped for want of an output PT.
    pub dtmf_dropped: u64,
    /// Output frames DTX left unsent.
    pub dtx_skipped: u64,
}

enum Dec {
    Pcmu,
    Pcma,
    G722(G722Decoder),
    Opus(OpusDecoder),
}

enum Enc {
    Pcmu,
    Pcma,
    G722(G722Encoder),
    Opus { enc: OpusEncoder, dtx: bool },
}

struct Input {
    pt: u8,
    codec: Codec,
    dec: Dec,
    plc: Plc,
    resampler: Resampler,
}

/// The transcoder of one direction of one stream; see the module doc.
pub struct Transcoder {
    inputs: Vec<Input>,
    input_dtmf: Option<u8>,
    output: Codec,
    output_pt: u8,
    output_dtmf: Option<u8>,
    enc: Enc,
    ssrc: u32,
    /// Output samples per frame (at the output codec's rate).
    frame: usize,
    /// Output RTP ticks per frame.
    frame_ticks: u32,
    // Output state.
    seq: u16,
    ts: u32,
    marker: bool,
    /// Output-rate samples waiting for a whole frame.
    acc: Vec<i16>,
    // Input state; `cur` is the index of the input codec in use.
    started: bool,
    cur: usize,
    in_ssrc: u32,
    in_seq_next: u16,
    in_ts_next: u32,
    /// Ticks (input clock) and samples (input codec rate) of the last
    /// audio packet.
    last_ticks: u32,
    last_samples: usize,
    /// Last event's input timestamp and the output one given to it.
    dtmf_map: Option<(u32, u32)>,
    /// Input timestamp of the last event sent (for its M bit).
    last_event_ts: Option<u32>,
    /// Output ticks of silence the last flush added.
    pad_ticks: u32,
    // Scratch, sized at construction.
    pcm: Vec<i16>,
    stats: Stats,
}

fn ptime_ok(codec: Codec, ms: u32) -> bool {
    match codec {
        Codec::Opus { .. } => matches!(ms, 10 | 20 | 40 | 60),
        _ => (1..=12).any(|k| k * 10 == ms),
    }
}

impl Transcoder {
    /// Builds the decoders, resamplers and encoder `cfg` asks for.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        if cfg.inputs.is_empty() {
            return Err(ConfigError::NoInputs);
        }
        let mut seen = [false; 128];
        let in_pts = cfg.inputs.iter().map(|i| i.0).chain(cfg.input_dtmf);
        for pt in in_pts {
            let slot = seen
                .get_mut(usize::from(pt))
                .ok_or(ConfigError::BadPayloadType(pt))?;
            if *slot {
                return Err(ConfigError::BadPayloadType(pt));
            }
            *slot = true;
        }
        for pt in [Some(cfg.output_pt), cfg.output_dtmf].into_iter().flatten() {
            if pt > 127 || (cfg.output_dtmf == Some(cfg.output_pt)) {
                return Err(ConfigError::BadPayloadType(pt));
            }
        }
        if !ptime_ok(cfg.output, cfg.output_ptime_ms) {
            return Err(ConfigError::BadPtime(cfg.output_ptime_ms));
        }
        let out_rate = cfg.output.sample_rate();
        let mut inputs = Vec::with_capacity(cfg.inputs.len());
        for &(pt, codec) in &cfg.inputs {
            let dec = match codec {
                Codec::Pcmu => Dec::Pcmu,
                Codec::Pcma => Dec::Pcma,
                Codec::G722 => Dec::G722(G722Decoder::new().map_err(ConfigError::G722)?),
                Codec::Opus { stereo } => Dec::Opus(
                    OpusDecoder::new(if stereo { 2 } else { 1 }).map_err(ConfigError::Opus)?,
                ),
            };
            inputs.push(Input {
                pt,
                codec,
                dec,
                plc: Plc::new(codec.sample_rate()),
                resampler: Resampler::new(codec.sample_rate(), out_rate)
                    .map_err(ConfigError::Resample)?,
            });
        }
        let enc = match cfg.output {
            Codec::Pcmu => Enc::Pcmu,
            Codec::Pcma => Enc::Pcma,
            Codec::G722 => Enc::G722(G722Encoder::new().map_err(ConfigError::G722)?),
            Codec::Opus { .. } => Enc::Opus {
                enc: OpusEncoder::new(&cfg.opus_fmtp).map_err(ConfigError::Opus)?,
                dtx: cfg.opus_fmtp.usedtx == Some(true),
            },
        };
        let frame = (out_rate * cfg.output_ptime_ms / 1000) as usize;
        Ok(Self {
            inputs,
            input_dtmf: cfg.input_dtmf,
            output: cfg.output,
            output_pt: cfg.output_pt,
            output_dtmf: cfg.output_dtmf,
            enc,
            ssrc: cfg.ssrc,
            frame,
            frame_ticks: cfg.output.rtp_clock() * cfg.output_ptime_ms / 1000,
            seq: cfg.first_seq,
            ts: cfg.first_ts,
            marker: true,
            // One frame plus the most one packet adds (120 ms at 48 kHz).
            acc: Vec::with_capacity(frame + MAX_FRAME + 480),
            started: false,
            cur: 0,
            in_ssrc: 0,
            in_seq_next: 0,
            in_ts_next: 0,
            last_ticks: 0,
            last_samples: 0,
            dtmf_map: None,
            last_event_ts: None,
            pad_ticks: 0,
            pcm: vec![0; MAX_FRAME * 2],
            stats: Stats::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Output SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Output samples per frame at the output codec's rate (e.g. 160 for
    /// 20 ms of G.711, 960 for 20 ms of Opus).
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Takes one input RTP packet and appends zero or more output packets
    /// to `out` (which it does not clear).
    ///
    /// # Errors
    /// See [`TranscodeError`]; no input makes it panic.
    pub fn push(&mut self, packet: &[u8], out: &mut OutPackets) -> Result<(), TranscodeError> {
        let rtp = RtpPacket::new_checked(packet).map_err(TranscodeError::Rtp)?;
        let pt = rtp.payload_type();
        let is_dtmf = self.input_dtmf == Some(pt);
        let idx = if is_dtmf {
            None
        } else {
            Some(
                self.inputs
                    .iter()
                    .position(|i| i.pt == pt)
                    .ok_or(TranscodeError::UnknownPayloadType(pt))?,
            )
        };
        let payload = rtp.payload();
        if let Some(i) = idx {
            if !matches!(self.inputs[i].codec, Codec::Opus { .. })
                && payload.len() > MAX_WAVEFORM_PAYLOAD
            {
                return Err(TranscodeError::PayloadTooLong(payload.len()));
            }
        }
        let event = if is_dtmf {
            Some(TelephoneEvent::parse(payload).map_err(TranscodeError::Dtmf)?)
        } else {
            None
        };
        let (seq, ts, ssrc) = (rtp.sequence_number(), rtp.timestamp(), rtp.ssrc());

        // Sequence numbers and restarts.
        let mut lost = 0u16;
        let switched = idx.is_some_and(|i| i != self.cur);
        if !self.started || ssrc != self.in_ssrc || switched {
            if self.started {
                self.flush(out)?;
                self.stats.resyncs += 1;
            }
            self.restart(ssrc, seq, ts, idx);
        } else {
            let delta = seq.wrapping_sub(self.in_seq_next) as i16;
            if (-MAX_MISORDER..0).contains(&delta) {
                self.stats.late += 1;
                return Ok(());
            }
            if delta < 0 {
                // Far behind: the sender restarted its sequence numbers.
                self.flush(out)?;
                self.stats.resyncs += 1;
                self.restart(ssrc, seq, ts, idx);
            } else if delta as u16 > MAX_CONCEALED || (delta > 0 && self.last_samples == 0) {
                let gap = ts.wrapping_sub(self.in_ts_next) as i32;
                self.flush(out)?;
                self.silence(i64::from(gap));
                self.stats.resyncs += 1;
                self.restart(ssrc, seq, ts, idx);
            } else {
                lost = delta as u16;
            }
        }
        self.in_seq_next = seq.wrapping_add(1);
        self.stats.packets_in += 1;

        if let Some(ev) = event {
            return self.dtmf(ts, ev, out);
        }
        let Some(i) = idx else { return Ok(()) };

        // Lost packets first, then the timestamp gap, then this packet.
        if lost > 0 {
            self.conceal(i, lost, payload, out)?;
        }
        let gap = ts.wrapping_sub(self.in_ts_next) as i32;
        if gap > 0 {
            self.flush(out)?;
            self.silence(i64::from(gap));
            self.in_ts_next = ts;
        }
        self.decode(i, payload, out)
    }

    /// Starts a new input timeline at this packet.
    fn restart(&mut self, ssrc: u32, seq: u16, ts: u32, idx: Option<usize>) {
        self.started = true;
        self.in_ssrc = ssrc;
        self.in_seq_next = seq;
        self.in_ts_next = ts;
        self.last_ticks = 0;
        self.last_samples = 0;
        self.dtmf_map = None;
        self.pad_ticks = 0;
        self.marker = true;
        if let Some(i) = idx {
            self.cur = i;
            let inp = &mut self.inputs[i];
            inp.plc.reset();
            inp.resampler.reset();
        }
    }

    /// Moves the output timeline over `gap_ticks` of input-clock silence
    /// (after [`Transcoder::flush`], which already added its padding).
    fn silence(&mut self, gap_ticks: i64) {
        let in_clock = self.inputs[self.cur].codec.rtp_clock();
        if gap_ticks <= 0 || gap_ticks > MAX_SILENCE_S * i64::from(in_clock) {
            return;
        }
        let out_ticks = rescale_ticks(gap_ticks, in_clock, self.output.rtp_clock());
        let padded = i64::from(self.pad_ticks);
        self.pad_ticks = 0;
        let jump = (out_ticks - padded).max(0);
        self.ts = self.ts.wrapping_add(jump as u32);
        self.marker = true;
    }

    /// Completes the pending output with silence and sends it.
    fn flush(&mut self, out: &mut OutPackets) -> Result<(), TranscodeError> {
        self.pad_ticks = 0;
        if self.acc.is_empty() {
            return Ok(());
        }
        let pad = self.frame - self.acc.len() % self.frame;
        if pad < self.frame {
            self.acc.resize(self.acc.len() + pad, 0);
            self.pad_ticks = (pad as u64 * u64::from(self.frame_ticks) / self.frame as u64) as u32;
        }
        self.encode_ready(out)
    }

    /// Conceals `lost` packets before `next` (this packet's payload).
    fn conceal(
        &mut self,
        i: usize,
        lost: u16,
        next: &[u8],
        out: &mut OutPackets,
    ) -> Result<(), TranscodeError> {
        let n = self.last_samples.min(MAX_FRAME);
        for k in 0..lost {
            let last = k + 1 == lost;
            match &mut self.inputs[i].dec {
                Dec::Opus(d) => {
                    let ch = d.channels();
                    let buf = &mut self.pcm[..n * ch];
                    let r = if last {
                        d.decode_fec(next, buf)
                    } else {
                        d.conceal(buf)
                    };
                    match r {
                        Ok(_) if last && !next.is_empty() => self.stats.fec_recovered += 1,
                        Ok(_) => {}
                        Err(_) => buf.fill(0),
                    }
                    downmix(&mut self.pcm, n, ch);
                }
                _ => self.inputs[i].plc.conceal(&mut self.pcm[..n]),
            }
            self.stats.concealed += 1;
            self.in_ts_next = self.in_ts_next.wrapping_add(self.last_ticks);
            self.feed(i, n, out)?;
        }
        Ok(())
    }

    /// Decodes one good payload and feeds it on.
    fn decode(
        &mut self,
        i: usize,
        payload: &[u8],
        out: &mut OutPackets,
    ) -> Result<(), TranscodeError> {
        if payload.is_empty() {
            return Ok(());
        }
        let inp = &mut self.inputs[i];
        let decoded = match &mut inp.dec {
            Dec::Pcmu => {
                let n = g711::ulaw_decode_into(payload, &mut self.pcm);
                Ok((n, n))
            }
            Dec::Pcma => {
                let n = g711::alaw_decode_into(payload, &mut self.pcm);
                Ok((n, n))
            }
            Dec::G722(d) => {
                let n = d.decode(payload, &mut self.pcm);
                Ok((n, n / 2))
            }
            Dec::Opus(d) => {
                let ch = d.channels();
                d.decode(payload, &mut self.pcm).map(|n| {
                    downmix(&mut self.pcm, n, ch);
                    (n, n)
                })
            }
        };
        let (samples, ticks) = match decoded {
            Ok(st) => st,
            Err(e) => {
                // An undecodable Opus packet: conceal its time as a loss
                // of the last packet's duration.
                if self.last_samples > 0 {
                    self.conceal(i, 1, &[], out)?;
                }
                return Err(TranscodeError::Decode(e));
            }
        };
        if !matches!(inp.dec, Dec::Opus(_)) {
            inp.plc.good(&mut self.pcm[..samples]);
        }
        self.last_samples = samples;
        self.last_ticks = ticks as u32;
        self.in_ts_next = self.in_ts_next.wrapping_add(ticks as u32);
        self.feed(i, samples, out)
    }

    /// Resamples `self.pcm[..n]` into the output frame and encodes what is
    /// whole.
    fn feed(&mut self, i: usize, n: usize, out: &mut OutPackets) -> Result<(), TranscodeError> {
        self.inputs[i]
            .resampler
            .process(&self.pcm[..n], &mut self.acc);
        self.encode_ready(out)
    }

    /// Encodes and sends every whole frame in `acc`.
    fn encode_ready(&mut self, out: &mut OutPackets) -> Result<(), TranscodeError> {
        let mut done = 0;
        let mut result = Ok(());
        while self.acc.len() - done >= self.frame {
            let frame = &self.acc[done..done + self.frame];
            done += self.frame;
            let h = Header {
                marker: self.marker,
                pt: self.output_pt,
                seq: self.seq,
                ts: self.ts,
                ssrc: self.ssrc,
            };
            self.ts = self.ts.wrapping_add(self.frame_ticks);
            let max = match self.output {
                Codec::Pcmu | Codec::Pcma => self.frame,
                Codec::G722 => self.frame / 2,
                Codec::Opus { .. } => MAX_PACKET,
            };
            let enc = &mut self.enc;
            let r = out.push(h, max, |p| match enc {
                Enc::Pcmu => Ok(g711::ulaw_encode(frame, p)),
                Enc::Pcma => Ok(g711::alaw_encode(frame, p)),
                Enc::G722(e) => Ok(e.encode(frame, p)),
                Enc::Opus { enc, dtx } => match enc.encode(frame, p) {
                    // libopus: with DTX, a packet of 2 bytes or less need
                    // not be sent.
                    Ok(n) if *dtx && n <= 2 => Err(None),
                    Ok(n) => Ok(n),
                    Err(e) => Err(Some(e)),
                },
            });
            match r {
                Some(Ok(())) => {
                    self.seq = self.seq.wrapping_add(1);
                    self.marker = false;
                    self.stats.packets_out += 1;
                }
                Some(Err(None)) => {
                    self.stats.dtx_skipped += 1;
                    self.marker = true;
                }
                Some(Err(Some(e))) => result = Err(TranscodeError::Encode(e)),
                None => result = Err(TranscodeError::OutputFull),
            }
        }
        self.acc.copy_within(done.., 0);
        self.acc.truncate(self.acc.len() - done);
        result
    }

    /// Passes one telephone-event through.
    fn dtmf(
        &mut self,
        ts: u32,
        ev: TelephoneEvent,
        out: &mut OutPackets,
    ) -> Result<(), TranscodeError> {
        let Some(pt) = self.output_dtmf else {
            self.stats.dtmf_dropped += 1;
            return Ok(());
        };
        let in_clock = self.inputs[self.cur].codec.rtp_clock();
        let out_clock = self.output.rtp_clock();
        let out_ts = match self.dtmf_map {
            Some((i, o)) if i == ts => o,
            _ => {
                // Output time of the next input sample, plus the event's
                // offset from it.
                let pending = (self.acc.len() as u64 * u64::from(self.frame_ticks)
                    / self.frame as u64) as u32;
                let off = rescale_ticks(
                    i64::from(ts.wrapping_sub(self.in_ts_next) as i32),
                    in_clock,
                    out_clock,
                );
                let o = self
                    .ts
                    .wrapping_add(pending)
                    .wrapping_add(off as i32 as u32);
                self.dtmf_map = Some((ts, o));
                o
            }
        };
        let ev = ev.rescaled(in_clock, out_clock);
        let first = self.marker_for_event(ts);
        let h = Header {
            marker: first,
            pt,
            seq: self.seq,
            ts: out_ts,
            ssrc: self.ssrc,
        };
        match out.push::<()>(h, crate::dtmf::PAYLOAD_LEN, |p| Ok(ev.write(p))) {
            Some(_) => {
                self.seq = self.seq.wrapping_add(1);
                self.stats.packets_out += 1;
                Ok(())
            }
            None => Err(TranscodeError::OutputFull),
        }
    }

    /// M on the first packet of an event (RFC 4733 §2.5.1.1).
    fn marker_for_event(&mut self, ts: u32) -> bool {
        let first = self.last_event_ts != Some(ts);
        self.last_event_ts = Some(ts);
        first
    }
}

/// Mixes `n` interleaved frames of `ch` channels in `pcm` to mono, in
/// place (`pcm[..n]`).
fn downmix(pcm: &mut [i16], n: usize, ch: usize) {
    if ch != 2 {
        return;
    }
    for k in 0..n.min(pcm.len() / 2) {
        let m = (i32::from(pcm[2 * k]) + i32::from(pcm[2 * k + 1])) / 2;
        pcm[k] = m as i16;
    }
}

//! Test support: a small generated ONNX model with facelock metadata, drawn face-like images,
//! and a pseudo-terminal pair. Built only with the `test-support` feature.
use std::fs::File;
use std::io::{Cursor, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use facelock_shared::frame::{self, Event, FrameDecoder, MAX_FRAME_LEN};
use facelock_shared::model_meta as keys;
use facelock_shared::protocol::{Envelope, Request, Response};
pub use facelock_shared::serial::{open_pty, Pty};
use prost::Message;
use tract_onnx::pb;

/// Input side of the test model in pixels.
pub const TEST_INPUT: usize = 112;
/// Embedding dimension of the test model.
pub const TEST_DIM: usize = 128;
/// Cosine threshold written into the test model's metadata (all three FAR points).
pub const TEST_THRESHOLD: f32 = 0.80;

const CONV_CHANNELS: usize = 4;
const CONV_KERNEL: usize = 8;

/// Deterministic xorshift generator for weights and drawing (no external randomness).
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Next raw 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn tensor(name: &str, dims: &[i64], values: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: values,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| pb::tensor_shape_proto::Dimension {
            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints_attribute(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// The facelock metadata the test model carries, as (key, value) pairs.
pub fn test_metadata(model_id: u64) -> Vec<(String, String)> {
    let threshold = TEST_THRESHOLD.to_string();
    [
        (keys::FORMAT_VERSION, "1".to_string()),
        (keys::INPUT_HEIGHT, TEST_INPUT.to_string()),
        (keys::INPUT_WIDTH, TEST_INPUT.to_string()),
        (keys::LAYOUT, "NCHW".into()),
        (keys::COLOR, "RGB".into()),
        (keys::MEAN, "0.5,0.5,0.5".into()),
        (keys::STD, "0.5,0.5,0.5".into()),
        (keys::EMBEDDING_DIM, TEST_DIM.to_string()),
        (keys::MODEL_ID, format!("{model_id:016x}")),
        (keys::PRODUCER, "facelock-firmware test-support".into()),
        (keys::QUANTIZATION, "f32".into()),
        (keys::THRESHOLD_FAR_1E2, threshold.clone()),
        (keys::THRESHOLD_FAR_1E3, threshold.clone()),
        (keys::THRESHOLD_FAR_1E4, threshold),
        (keys::THRESHOLD_SOURCE, "none (generated test model)".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// ONNX bytes of a small linear embedding net, [1, 3, 112, 112] → [1, 128]:
/// Conv(3→4, 8x8, stride 8) → Flatten → Gemm(784→128), weights drawn from `model_id`.
/// `metadata` becomes the model's `metadata_props` (use [`test_metadata`] for a valid model).
pub fn test_model_bytes(model_id: u64, metadata: &[(String, String)]) -> Vec<u8> {
    let mut rng = Xorshift::new(model_id);
    let conv_fan_in = 3 * CONV_KERNEL * CONV_KERNEL;
    let conv_w: Vec<f32> = (0..CONV_CHANNELS * conv_fan_in)
        .map(|_| rng.symmetric() / (conv_fan_in as f32).sqrt())
        .collect();
    let side = TEST_INPUT / CONV_KERNEL;
    let flat = CONV_CHANNELS * side * side;
    let gemm_w: Vec<f32> = (0..flat * TEST_DIM)
        .map(|_| rng.symmetric() / (flat as f32).sqrt())
        .collect();
    let k = CONV_KERNEL as i64;

    let graph = pb::GraphProto {
        name: "facelock-test".into(),
        node: vec![
            node(
                "Conv",
                &["input", "conv_w", "conv_b"],
                "conv",
                vec![
                    ints_attribute("kernel_shape", &[k, k]),
                    ints_attribute("strides", &[k, k]),
                ],
            ),
            node("Flatten", &["conv"], "flat", vec![]),
            node("Gemm", &["flat", "gemm_w", "gemm_b"], "embedding", vec![]),
        ],
        initializer: vec![
            tensor("conv_w", &[CONV_CHANNELS as i64, 3, k, k], conv_w),
            tensor("conv_b", &[CONV_CHANNELS as i64], vec![0.0; CONV_CHANNELS]),
            tensor("gemm_w", &[flat as i64, TEST_DIM as i64], gemm_w),
            tensor("gemm_b", &[TEST_DIM as i64], vec![0.0; TEST_DIM]),
        ],
        input: vec![value_info(
            "input",
            &[1, 3, TEST_INPUT as i64, TEST_INPUT as i64],
        )],
        output: vec![value_info("embedding", &[1, TEST_DIM as i64])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "facelock-firmware test-support".into(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// A drawn face: RGB pixels and its five landmarks (eyes, nose, mouth corners) in pixels.
pub struct DrawnFace {
    /// The image.
    pub image: image::RgbImage,
    /// Left eye, right eye, nose, left mouth, right mouth: (x, y) in pixels.
    pub landmarks: [(f32, f32); 5],
}

impl DrawnFace {
    /// The image encoded as PNG (about 60 KB: larger than one frame, use for chunked enrollment).
    pub fn png(&self) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        self.image
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("PNG encoding to memory");
        out.into_inner()
    }

    /// The image encoded as JPEG at quality 90 (fits one `Verify` frame).
    pub fn jpeg(&self) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&self.image)
            .expect("JPEG encoding to memory");
        out
    }
}

/// Draws a 150x150 face-like image of identity `person`; `shot` varies pose jitter and noise
/// slightly, so two shots of one person are close and two persons are far apart.
pub fn draw_face(person: u64, shot: u64) -> DrawnFace {
    let mut identity = Xorshift::new(person.wrapping_add(0x51ed));
    let mut variation = Xorshift::new(person.wrapping_mul(7919).wrapping_add(shot).wrapping_add(1));
    let colour = |rng: &mut Xorshift| {
        [
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ]
    };
    let background = colour(&mut identity);
    let skin = colour(&mut identity);
    let hair = colour(&mut identity);
    let feature = colour(&mut identity);
    let face_w = 38.0 + identity.below(16) as f32;
    let face_h = 50.0 + identity.below(16) as f32;
    let eye_dx = 14.0 + identity.below(10) as f32;
    let eye_y = 60.0 + identity.below(10) as f32;
    let mouth_y = 98.0 + identity.below(10) as f32;
    let mouth_w = 10.0 + identity.below(10) as f32;
    let stripes = identity.below(12) as f32 + 4.0;

    let jitter_x = variation.symmetric() * 1.5;
    let jitter_y = variation.symmetric() * 1.5;
    let (cx, cy) = (75.0 + jitter_x, 80.0 + jitter_y);
    let left_eye = (cx - eye_dx, eye_y + jitter_y);
    let right_eye = (cx + eye_dx, eye_y + jitter_y);
    let nose = (cx, (eye_y + mouth_y) / 2.0 + jitter_y);
    let left_mouth = (cx - mouth_w, mouth_y + jitter_y);
    let right_mouth = (cx + mouth_w, mouth_y + jitter_y);

    let near =
        |x: f32, y: f32, p: (f32, f32), r: f32| (x - p.0).powi(2) + (y - p.1).powi(2) < r * r;
    let image = image::RgbImage::from_fn(150, 150, |px, py| {
        let (x, y) = (px as f32, py as f32);
        let inside_face = ((x - cx) / face_w).powi(2) + ((y - cy) / face_h).powi(2) < 1.0;
        let mut rgb = if near(x, y, left_eye, 4.0)
            || near(x, y, right_eye, 4.0)
            || near(x, y, nose, 3.0)
            || (inside_face && (y - mouth_y - jitter_y).abs() < 2.0 && (x - cx).abs() < mouth_w)
        {
            feature
        } else if inside_face {
            skin
        } else if y < cy - face_h * 0.6 || ((x / stripes) as i32) % 2 == 0 {
            hair
        } else {
            background
        };
        for channel in &mut rgb {
            let noise = variation.symmetric() * 6.0;
            *channel = (*channel as f32 + noise).clamp(0.0, 255.0) as u8;
        }
        image::Rgb(rgb)
    });
    DrawnFace {
        image,
        landmarks: [left_eye, right_eye, nose, left_mouth, right_mouth],
    }
}

/// A host-side client for tests: frames requests onto the pty and reads responses.
pub struct Client {
    port: File,
    decoder: Box<FrameDecoder<MAX_FRAME_LEN>>,
    pending: Vec<u8>,
    seq: u32,
    /// Time from the last request byte written to the last response byte read, per call.
    pub last_round_trip: Duration,
    last_write: Option<Instant>,
}

impl Client {
    /// A client on the controller side of a pty (or any fd-backed file).
    pub fn new(port: File) -> Self {
        Client {
            port,
            decoder: Box::new(FrameDecoder::new()),
            pending: Vec::new(),
            seq: 0,
            last_round_trip: Duration::ZERO,
            last_write: None,
        }
    }

    /// Writes raw bytes (for malformed-frame tests). The clock for [`Client::last_round_trip`]
    /// starts just before the last byte is written, so the board cannot have answered yet.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let (last, head) = bytes.split_last().expect("at least one byte to send");
        self.port.write_all(head).expect("writing to the pty");
        self.last_write = Some(Instant::now());
        self.port
            .write_all(std::slice::from_ref(last))
            .expect("writing to the pty");
        self.port.flush().expect("flushing the pty");
    }

    /// Frames and sends a request; returns its sequence number.
    pub fn send(&mut self, request: &Request<'_>) -> u32 {
        self.seq += 1;
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let bytes = frame::encode(&Envelope::new(self.seq, request.clone()), &mut buf)
            .expect("request fits a frame")
            .to_vec();
        self.send_raw(&bytes);
        self.seq
    }

    /// Waits up to `timeout` for one response frame and hands it to `f` with its sequence
    /// number. Panics on timeout or a bad frame (test helper).
    pub fn receive<R>(&mut self, timeout: Duration, f: impl FnOnce(u32, &Response<'_>) -> R) -> R {
        let deadline = Instant::now() + timeout;
        loop {
            // First use bytes already read.
            if !self.pending.is_empty() {
                let pending = std::mem::take(&mut self.pending);
                let (used, event) = self.decoder.feed::<Envelope<Response>>(&pending);
                let leftover = pending[used..].to_vec();
                match event {
                    Event::Frame(envelope) => {
                        if let Some(sent) = self.last_write {
                            self.last_round_trip = sent.elapsed();
                        }
                        let result = f(envelope.seq, &envelope.body);
                        self.pending = leftover;
                        return result;
                    }
                    Event::NeedMore => self.pending = leftover,
                    Event::BadFrame { reason, .. } => panic!("bad response frame: {reason:?}"),
                }
            }
            let now = Instant::now();
            assert!(now < deadline, "no response within {timeout:?}");
            let mut poll = libc::pollfd {
                fd: self.port.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let wait_ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for an open descriptor.
            let ready = unsafe { libc::poll(&mut poll, 1, wait_ms) };
            if ready <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.port.read(&mut buf) {
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
    }

    /// Sends `request` and hands the matching response to `f` (10 s timeout).
    pub fn call<R>(&mut self, request: &Request<'_>, f: impl FnOnce(&Response<'_>) -> R) -> R {
        let seq = self.send(request);
        self.receive(Duration::from_secs(10), |got, response| {
            assert_eq!(got, seq, "response to another request: {response:?}");
            f(response)
        })
    }

    /// Runs the challenge-response with `key`; returns the board's answer as text.
    pub fn authenticate(&mut self, key: &[u8]) -> String {
        let nonce = self.call(&Request::AuthChallenge, |r| match r {
            Response::Challenge { nonce } => *nonce,
            other => panic!("expected a challenge, got {other:?}"),
        });
        let mac = facelock_shared::auth::respond(key, &nonce, crate::device::AUTH_CONTEXT)
            .expect("key long enough");
        self.call(&Request::AuthResponse { mac }, |r| format!("{r:?}"))
    }

    /// Enrolls `user_id` from PNG images sent in `chunk`-byte pieces; returns the final
    /// response as text (`Enrolled { .. }` on success) or the first error.
    pub fn enroll(&mut self, user_id: u32, name: &str, images: &[Vec<u8>], chunk: usize) -> String {
        let begin = Request::EnrollBegin {
            user_id,
            name,
            image_count: images.len() as u8,
            replace: false,
        };
        let answer = self.call(&begin, |r| format!("{r:?}"));
        if !answer.starts_with("EnrollReady") {
            return answer;
        }
        for (index, image) in images.iter().enumerate() {
            let pieces: Vec<&[u8]> = image.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let request = Request::EnrollChunk {
                    image_index: index as u8,
                    offset: (i * chunk) as u32,
                    last: i + 1 == pieces.len(),
                    landmarks: None,
                    bytes: piece,
                };
                let answer = self.call(&request, |r| format!("{r:?}"));
                if !answer.starts_with("EnrollProgress") {
                    return answer;
                }
            }
        }
        self.call(&Request::EnrollCommit, |r| format!("{r:?}"))
    }
}

//! Device state behind the server: the model, the persisted gallery and lockout, the admin key.
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use facelock_shared::decision::{Lockout, Persisted, Policy};
use facelock_shared::embedding::{Accumulator, Template};
use facelock_shared::gallery::{self, Gallery};
use facelock_shared::protocol::ErrorCode;

use crate::config::AdminKey;
use crate::enroll::Enrollment;
use crate::error::{Error, Result};
use crate::model::FaceModel;
use crate::pipeline::{self, Landmarks};
use crate::store::{FileStore, Loaded};

/// Embedding dimension this firmware is built for; models with another dimension are refused.
pub const DIM: usize = 128;

/// Device context mixed into the admin MAC (see `facelock_shared::auth`): empty, so one key
/// works with any board; a host must pass the same.
pub const AUTH_CONTEXT: &[u8] = b"";

/// Users the gallery holds.
pub const CAPACITY: usize = 1000;

/// The gallery type stored on the board.
pub type BoardGallery = Gallery<CAPACITY, DIM>;

/// Monotonic milliseconds since the daemon started: the lockout clock. A lockout is persisted
/// as time remaining, so it resumes after a restart whatever the wall clock does.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What a verify decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyOutcome {
    /// Cosine similarity to the claimed user's template.
    pub score: f32,
    /// Whether the score reached the threshold.
    pub accepted: bool,
    /// Consecutive failures after this attempt.
    pub failures: u8,
    /// Lockout left after this attempt, ms.
    pub locked_out_ms: u64,
    /// This attempt started a lockout.
    pub lockout_started: bool,
}

/// Everything the server acts on.
pub struct Device {
    model: FaceModel,
    policy: Policy,
    crop_fraction: f32,
    gallery: Box<BoardGallery>,
    gallery_store: FileStore,
    lockout: Lockout,
    lockout_store: FileStore,
    admin_key: AdminKey,
}

/// The lockout state file next to the gallery: `<gallery>.lockout`.
pub fn lockout_path(gallery: &Path) -> std::path::PathBuf {
    let mut name = gallery.file_name().unwrap_or_default().to_os_string();
    name.push(".lockout");
    gallery.with_file_name(name)
}

impl Device {
    /// Opens the stores for `model`. Refuses a gallery of another model id or dimension; a
    /// corrupt gallery or lockout file is kept aside and replaced by an empty one.
    pub fn open(
        model: FaceModel,
        policy: Policy,
        crop_fraction: f32,
        gallery_path: &Path,
        admin_key: AdminKey,
    ) -> Result<Self> {
        let meta = model.meta().clone();
        if meta.embedding_dim != DIM {
            return Err(Error::ModelMetadata {
                path: gallery_path.to_owned(),
                message: format!(
                    "embedding dim {} is not supported (this firmware: {DIM})",
                    meta.embedding_dim
                ),
            });
        }
        policy.validate().map_err(|e| Error::Config {
            path: gallery_path.to_owned(),
            message: format!("unlock policy {policy:?}: {e}"),
        })?;

        let gallery_store = FileStore::new(gallery_path, "gallery");
        let gallery = match std::fs::read(gallery_path) {
            Ok(bytes) => Self::parse_gallery(&gallery_store, &bytes, meta.model_id)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Box::new(BoardGallery::new(meta.model_id))
            }
            Err(e) => return Err(Error::io("reading gallery", gallery_path, e)),
        };

        let lockout_store = FileStore::new(lockout_path(gallery_path), "lockout state");
        let persisted =
            lockout_store.load(|bytes| Persisted::from_bytes(bytes).map_err(|e| e.to_string()))?;
        let lockout = match persisted {
            Loaded::Found(persisted) => {
                tracing::info!(
                    failures = persisted.failures,
                    locked_out_ms = persisted.remaining_ms,
                    "lockout state restored"
                );
                Lockout::resume(&persisted, now_ms())
            }
            Loaded::Missing | Loaded::Corrupt { .. } => Lockout::new(),
        };
        tracing::info!(users = gallery.len(), capacity = CAPACITY, "gallery loaded");
        Ok(Device {
            model,
            policy,
            crop_fraction,
            gallery,
            gallery_store,
            lockout,
            lockout_store,
            admin_key,
        })
    }

    /// Checks the header (model id) before the body, so a gallery of another model is
    /// refused by name rather than kept aside as corrupt.
    fn parse_gallery(store: &FileStore, bytes: &[u8], model_id: u64) -> Result<Box<BoardGallery>> {
        if let Ok(header) = gallery::read_header(bytes) {
            if header.model_id != model_id {
                return Err(Error::GalleryModelMismatch {
                    path: store.path().to_owned(),
                    gallery_model: header.model_id,
                    loaded_model: model_id,
                });
            }
        }
        let parsed = store.load(|bytes| {
            let mut gallery = Box::new(BoardGallery::new(model_id));
            gallery
                .load_into(bytes, Some(model_id))
                .map(|()| gallery)
                .map_err(|e| e.to_string())
        })?;
        match parsed {
            Loaded::Found(gallery) => Ok(gallery),
            Loaded::Missing | Loaded::Corrupt { .. } => Ok(Box::new(BoardGallery::new(model_id))),
        }
    }

    fn save_gallery(&self, gallery: &BoardGallery) -> Result<(), (ErrorCode, String)> {
        let mut bytes = vec![0u8; gallery.serialized_len()];
        let len = gallery
            .to_bytes(&mut bytes)
            .map_err(|e| (ErrorCode::Internal, format!("serialising gallery: {e}")))?;
        self.gallery_store.save(&bytes[..len]).map_err(|e| {
            tracing::error!(error = %e, "gallery save failed; gallery unchanged");
            (ErrorCode::StorageError, e.to_string())
        })
    }

    fn save_lockout(&self, now_ms: u64) -> Result<(), (ErrorCode, String)> {
        let bytes = self.lockout.snapshot(now_ms).to_bytes();
        self.lockout_store.save(&bytes).map_err(|e| {
            tracing::error!(error = %e, "lockout state save failed");
            (ErrorCode::StorageError, e.to_string())
        })
    }

    /// Id of the loaded model.
    pub fn model_id(&self) -> u64 {
        self.model.meta().model_id
    }

    /// Embedding dimension.
    pub fn embedding_dim(&self) -> usize {
        DIM
    }

    /// Accept threshold (cosine).
    pub fn threshold(&self) -> f32 {
        self.policy.threshold
    }

    /// Gallery capacity.
    pub fn capacity(&self) -> usize {
        CAPACITY
    }

    /// Users enrolled.
    pub fn enrolled(&self) -> usize {
        self.gallery.len()
    }

    /// Whether `user_id` is enrolled.
    pub fn has_user(&self, user_id: u32) -> bool {
        self.gallery.get(user_id).is_some()
    }

    /// (user id, name, samples) of every user, in gallery order.
    pub fn users(&self) -> Vec<(u32, String, u16)> {
        self.gallery
            .iter()
            .map(|r| (r.user_id, r.name.as_str().to_owned(), r.samples))
            .collect()
    }

    /// Whether `mac` is the HMAC of `nonce` under the admin key.
    pub fn check_mac(&self, nonce: &[u8; 32], mac: &[u8; 32]) -> bool {
        facelock_shared::auth::verify(self.admin_key.expose(), nonce, AUTH_CONTEXT, mac)
            .unwrap_or(false)
    }

    /// Image bytes → L2-normalised embedding.
    pub fn embed(&self, bytes: &[u8], landmarks: Option<&Landmarks>) -> Result<Vec<f32>> {
        pipeline::embed_image(&self.model, bytes, landmarks, self.crop_fraction)
    }

    /// Stores a completed enrollment: the template is the average of its embeddings. The
    /// gallery changes only if the file was written.
    pub fn enroll(&mut self, enrollment: &Enrollment) -> Result<(), (ErrorCode, String)> {
        let mut accumulator = Accumulator::<DIM>::new();
        for embedding in &enrollment.embeddings {
            accumulator
                .add(embedding)
                .map_err(|e| (ErrorCode::from(e), e.to_string()))?;
        }
        let template = accumulator
            .finish()
            .map_err(|e| (ErrorCode::from(e), e.to_string()))?;
        let samples = enrollment.embeddings.len() as u16;
        let mut next = self.gallery.clone();
        let result = if enrollment.replace && next.get(enrollment.user_id).is_some() {
            next.replace(enrollment.user_id, &enrollment.name, samples, template)
        } else {
            next.enroll(enrollment.user_id, &enrollment.name, samples, template)
        };
        result.map_err(|e| (ErrorCode::from(e), e.to_string()))?;
        self.save_gallery(&next)?;
        self.gallery = next;
        Ok(())
    }

    /// Removes a user; the gallery changes only if the file was written.
    pub fn delete(&mut self, user_id: u32) -> Result<(), (ErrorCode, String)> {
        let mut next = self.gallery.clone();
        next.remove(user_id)
            .map_err(|e| (ErrorCode::from(e), format!("user {user_id}: {e}")))?;
        self.save_gallery(&next)?;
        self.gallery = next;
        Ok(())
    }

    /// Whether a verify of `user_id` may run at `now_ms`: not locked out, user enrolled.
    pub fn may_verify(&self, user_id: u32, now_ms: u64) -> Result<(), (ErrorCode, String)> {
        if let Err(locked) = self.lockout.check(now_ms) {
            return Err((
                ErrorCode::LockedOut,
                format!("locked out for {} ms", locked.remaining_ms),
            ));
        }
        if !self.has_user(user_id) {
            return Err((ErrorCode::UnknownUser, format!("user {user_id}")));
        }
        Ok(())
    }

    /// 1:1 verify of a probe image against `user_id`, under the lockout policy at `now_ms`.
    pub fn verify(
        &mut self,
        user_id: u32,
        image: &[u8],
        landmarks: Option<&Landmarks>,
        now_ms: u64,
    ) -> Result<VerifyOutcome, (ErrorCode, String)> {
        self.may_verify(user_id, now_ms)?;
        let embedding = self
            .embed(image, landmarks)
            .map_err(|e| (ErrorCode::BadImage, e.to_string()))?;
        self.decide(user_id, &embedding, now_ms)
    }

    /// 1:1 verify of a decoded camera frame whose face has `landmarks`.
    pub fn verify_frame(
        &mut self,
        user_id: u32,
        frame: &image::RgbImage,
        landmarks: &Landmarks,
        now_ms: u64,
    ) -> Result<VerifyOutcome, (ErrorCode, String)> {
        self.may_verify(user_id, now_ms)?;
        let embedding = pipeline::align_chw(
            frame,
            Some(landmarks),
            self.crop_fraction,
            self.model.meta(),
        )
        .and_then(|chw| self.model.embed(&chw))
        .map_err(|e| (ErrorCode::BadImage, e.to_string()))?;
        self.decide(user_id, &embedding, now_ms)
    }

    /// Scores `embedding` against `user_id` and records the decision in the lockout state.
    fn decide(
        &mut self,
        user_id: u32,
        embedding: &[f32],
        now_ms: u64,
    ) -> Result<VerifyOutcome, (ErrorCode, String)> {
        let probe = Template::<DIM>::from_embedding(embedding)
            .map_err(|e| (ErrorCode::from(e), e.to_string()))?;
        let score = self
            .gallery
            .verify(user_id, &probe)
            .map_err(|e| (ErrorCode::from(e), e.to_string()))?;
        let accepted = self.policy.accepts(score);

        // The failure is on disk before the answer goes out, so a kill cannot erase it.
        // Only a change is written (an accept with no failures before changes nothing).
        let before = self.lockout;
        let outcome = self.lockout.record(&self.policy, now_ms, accepted);
        if self.lockout != before {
            if let Err(failure) = self.save_lockout(now_ms) {
                self.lockout = before;
                return Err(failure);
            }
        }
        Ok(VerifyOutcome {
            score,
            accepted,
            failures: outcome.failures,
            locked_out_ms: outcome.locked_out_ms,
            lockout_started: outcome.locked_out_ms > 0,
        })
    }

    /// (consecutive failures, lockout ms left) at `now_ms`.
    pub fn lockout_status(&self, now_ms: u64) -> (u8, u64) {
        (self.lockout.failures(), self.lockout.remaining_ms(now_ms))
    }
}

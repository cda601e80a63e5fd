//! Verification evaluation: embedding, pair scoring, k-fold accuracy, ROC, TAR@FAR, EER, AUC.
pub mod embedder;
pub mod npy;
pub mod pair_scores;
pub mod report;
pub mod verification;

pub use report::{VerificationReport, REPORT_FARS};
pub use verification::{FoldAccuracy, RocPoint, ScoredPairs, TarAtFar};

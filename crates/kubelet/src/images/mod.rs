//! Image garbage collection (spec section 2).

mod gc;
mod policy;
mod records;

pub use gc::{
    IMAGE_PLAN_SCHEMA, ImageCollector, ImageGcEntry, ImageGcError, ImageKeepReason, ImagePass,
    ImagePlan, ImageRemoval, ImageStep, KeptImage, format_capacity, plan_images,
    records_from_snapshot,
};
pub use policy::{ImagePolicy, ImagePolicyError};
pub use records::{
    Detection, ImageFsStats, ImageRecord, ImageRecords, ImageSnapshot, ImageUser, ListedImage,
    RecordRef,
};

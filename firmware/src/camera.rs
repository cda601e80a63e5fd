//! Frame sources for camera unlocks: `dir:<path>` (image files as frames, for tests and
//! replays) and V4L2 capture devices (`/dev/videoN`, 640x480 YUYV or MJPEG).
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::RgbImage;

use crate::error::{Error, Result};
use crate::pipeline;

/// Where frames come from, as given to `--camera`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSpec {
    /// `dir:<path>`: image files in the folder, each used once, in name order.
    Dir(PathBuf),
    /// A V4L2 capture device such as `/dev/video0`.
    V4l2(PathBuf),
}

impl FromStr for CameraSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("dir: needs a folder, e.g. dir:/var/lib/facelock/frames".into());
            }
            return Ok(CameraSpec::Dir(PathBuf::from(path)));
        }
        if text.starts_with("/dev/") {
            return Ok(CameraSpec::V4l2(PathBuf::from(text)));
        }
        Err(format!(
            "'{text}' is neither dir:<folder> nor a /dev/video device"
        ))
    }
}

/// A source of RGB frames.
pub trait Camera: Send {
    /// The next frame, or `None` if none is available right now.
    fn capture(&mut self) -> Result<Option<RgbImage>>;

    /// Drops frames captured before now, so an unlock sees the scene as it is.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Frame size asked of V4L2 cameras.
pub const V4L2_SIZE: (u32, u32) = (640, 480);

/// Opens the source `spec` names.
pub fn open(spec: &CameraSpec) -> Result<Box<dyn Camera>> {
    match spec {
        CameraSpec::Dir(path) => Ok(Box::new(DirCamera::open(path)?)),
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        CameraSpec::V4l2(path) => Ok(Box::new(crate::v4l2::V4l2Camera::open(
            path,
            V4L2_SIZE.0,
            V4L2_SIZE.1,
        )?)),
        #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
        CameraSpec::V4l2(_) => Err(Error::Unsupported(
            "V4L2 capture needs 64-bit Linux; feed frames with --camera dir:<folder>",
        )),
    }
}

/// Image files in a folder as a stream: each capture reads the first file whose name sorts
/// after the last one read, so frames dropped in later (with larger names) are seen too.
/// Files that are not JPEG/PNG/PNM images are skipped with a warning.
pub struct DirCamera {
    folder: PathBuf,
    last: Option<String>,
}

impl DirCamera {
    /// A source reading `folder`, which must exist.
    pub fn open(folder: &Path) -> Result<Self> {
        if !folder.is_dir() {
            return Err(Error::io(
                "opening camera folder",
                folder,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        Ok(DirCamera {
            folder: folder.to_owned(),
            last: None,
        })
    }

    fn next_name(&self) -> Result<Option<String>> {
        let entries = std::fs::read_dir(&self.folder)
            .map_err(|e| Error::io("reading camera folder", &self.folder, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .filter(|name| self.last.as_ref().is_none_or(|last| name > last))
            .collect();
        names.sort();
        Ok(names.into_iter().next())
    }
}

impl Camera for DirCamera {
    fn capture(&mut self) -> Result<Option<RgbImage>> {
        while let Some(name) = self.next_name()? {
            self.last = Some(name.clone());
            let path = self.folder.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io("reading frame", &path, e))?;
            match pipeline::decode_image(&bytes) {
                Ok(image) => return Ok(Some(image)),
                Err(e) => tracing::warn!(frame = %path.display(), "frame skipped: {e}"),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, value: u8) {
        let image = RgbImage::from_pixel(8, 6, image::Rgb([value, value, value]));
        image.save(path).unwrap();
    }

    #[test]
    fn specs_parse_and_non_cameras_are_refused() {
        assert_eq!(
            "dir:/tmp/frames".parse::<CameraSpec>(),
            Ok(CameraSpec::Dir("/tmp/frames".into()))
        );
        assert_eq!(
            "/dev/video0".parse::<CameraSpec>(),
            Ok(CameraSpec::V4l2("/dev/video0".into()))
        );
        assert!("dir:".parse::<CameraSpec>().is_err());
        assert!("webcam".parse::<CameraSpec>().is_err());
        let error = open(&CameraSpec::V4l2("/dev/null".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("V4L2"), "{error}");
    }

    #[test]
    fn a_folder_plays_each_frame_once_in_name_order_and_sees_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("002.png"), 20);
        png(&dir.path().join("001.png"), 10);
        std::fs::write(dir.path().join("001b.txt"), b"not an image").unwrap();
        let mut camera = DirCamera::open(dir.path()).unwrap();
        assert_eq!(camera.capture().unwrap().unwrap().get_pixel(0, 0)[0], 10);
        assert_eq!(camera.capture().unwrap().unwrap().get_pixel(0, 0)[0], 20);
        assert!(camera.capture().unwrap().is_none());
        png(&dir.path().join("003.png"), 30);
        assert_eq!(camera.capture().unwrap().unwrap().get_pixel(0, 0)[0], 30);
        assert!(DirCamera::open(&dir.path().join("missing")).is_err());
    }
}

//! Minimal V4L2 capture (Linux, 64-bit): one device, memory-mapped streaming, YUYV or MJPEG
//! frames converted to RGB.
//!
//! The structures below mirror `linux/videodev2.h` for LP64 targets (x86_64, aarch64); their
//! sizes are checked in the tests against the sizes encoded in the kernel's ioctl numbers.
#![cfg(all(target_os = "linux", target_pointer_width = "64"))]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{Error, Result};

const fn ioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr) as libc::c_ulong
}
const READ: u32 = 2;
const WRITE: u32 = 1;

const VIDIOC_QUERYCAP: libc::c_ulong = ioc(READ, 0, size_of::<Capability>());
const VIDIOC_S_FMT: libc::c_ulong = ioc(READ | WRITE, 5, size_of::<Format>());
const VIDIOC_REQBUFS: libc::c_ulong = ioc(READ | WRITE, 8, size_of::<RequestBuffers>());
const VIDIOC_QUERYBUF: libc::c_ulong = ioc(READ | WRITE, 9, size_of::<Buffer>());
const VIDIOC_QBUF: libc::c_ulong = ioc(READ | WRITE, 15, size_of::<Buffer>());
const VIDIOC_DQBUF: libc::c_ulong = ioc(READ | WRITE, 17, size_of::<Buffer>());
const VIDIOC_STREAMON: libc::c_ulong = ioc(WRITE, 18, size_of::<u32>());
const VIDIOC_STREAMOFF: libc::c_ulong = ioc(WRITE, 19, size_of::<u32>());

const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const MEMORY_MMAP: u32 = 1;
const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}
/// Packed 4:2:2 luma/chroma, Y0 U Y1 V.
pub const YUYV: u32 = fourcc(b"YUYV");
/// Motion JPEG: each frame a JPEG.
pub const MJPG: u32 = fourcc(b"MJPG");

const BUFFERS: u32 = 4;

/// `struct v4l2_capability`.
#[repr(C)]
#[derive(Default)]
struct Capability {
    driver: [u8; 16],
    card: [u8; 32],
    bus_info: [u8; 32],
    version: u32,
    capabilities: u32,
    device_caps: u32,
    reserved: [u32; 3],
}

/// `struct v4l2_pix_format`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PixFormat {
    width: u32,
    height: u32,
    pixelformat: u32,
    field: u32,
    bytesperline: u32,
    sizeimage: u32,
    colorspace: u32,
    private: u32,
    flags: u32,
    ycbcr_enc: u32,
    quantization: u32,
    xfer_func: u32,
}

/// `struct v4l2_format`: the type, then a 200-byte union aligned to 8 (it holds pointers).
#[repr(C)]
struct Format {
    kind: u32,
    union: FormatUnion,
}

#[repr(C)]
union FormatUnion {
    pix: PixFormat,
    raw: [u64; 25],
}

/// `struct v4l2_requestbuffers`.
#[repr(C)]
#[derive(Default)]
struct RequestBuffers {
    count: u32,
    kind: u32,
    memory: u32,
    capabilities: u32,
    flags: u8,
    reserved: [u8; 3],
}

/// `struct v4l2_buffer` (timeval 16 bytes, `m` an 8-byte union).
#[repr(C)]
#[derive(Default)]
struct Buffer {
    index: u32,
    kind: u32,
    bytesused: u32,
    flags: u32,
    field: u32,
    timestamp: [i64; 2],
    timecode: [u32; 4],
    sequence: u32,
    memory: u32,
    /// The `m` union; for MMAP buffers its low 32 bits are `m.offset`.
    offset: u64,
    length: u32,
    reserved2: u32,
    request_fd: u32,
}

/// The system calls capture makes on its device. [`Kernel`] makes them for real; the tests put a
/// simulated driver here, which decodes the arguments at the kernel header's byte offsets.
pub trait Driver: Send {
    /// One `ioctl` on the device.
    ///
    /// # Safety
    /// `argument` points to a live, writable value of the size encoded in `request`.
    unsafe fn ioctl(
        &mut self,
        request: libc::c_ulong,
        argument: *mut libc::c_void,
    ) -> std::io::Result<()>;

    /// Maps the `length` bytes of driver buffer memory at `offset`, read-write and shared.
    fn map(&mut self, length: usize, offset: u32) -> std::io::Result<*mut u8>;

    /// Unmaps what [`Driver::map`] returned.
    ///
    /// # Safety
    /// `pointer` and `length` come from one successful `map` call and are unmapped once.
    unsafe fn unmap(&mut self, pointer: *mut u8, length: usize);

    /// Waits up to `timeout_ms` for a filled buffer; whether one is ready.
    fn poll(&mut self, timeout_ms: i32) -> std::io::Result<bool>;
}

/// An open V4L2 device node, closed on drop.
pub struct Kernel {
    fd: libc::c_int,
}

impl Kernel {
    fn open(path: &Path) -> Result<Self> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::Camera(format!("{}: path holds a NUL byte", path.display())))?;
        // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io(
                "opening camera",
                path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Kernel { fd })
    }
}

impl Driver for Kernel {
    unsafe fn ioctl(
        &mut self,
        request: libc::c_ulong,
        argument: *mut libc::c_void,
    ) -> std::io::Result<()> {
        // SAFETY: the caller guarantees `argument` matches `request`; the descriptor is ours.
        let result = unsafe { libc::ioctl(self.fd, request as _, argument) };
        if result < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn map(&mut self, length: usize, offset: u32) -> std::io::Result<*mut u8> {
        // SAFETY: maps `length` bytes at the driver-given offset of our own descriptor; the
        // result is checked against MAP_FAILED, and the camera unmaps it before closing.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd,
                offset as libc::off_t,
            )
        };
        if pointer == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(pointer.cast())
    }

    unsafe fn unmap(&mut self, pointer: *mut u8, length: usize) {
        // SAFETY: the caller passes one successful mapping, once.
        unsafe { libc::munmap(pointer.cast(), length) };
    }

    fn poll(&mut self, timeout_ms: i32) -> std::io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        if ready < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ready > 0)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// A memory-mapped driver buffer.
struct Mapped {
    pointer: *mut u8,
    length: usize,
}

/// An open, streaming V4L2 capture device.
pub struct V4l2Camera<D: Driver = Kernel> {
    path: PathBuf,
    driver: D,
    buffers: Vec<Mapped>,
    format: PixFormat,
}

// SAFETY: the camera owns its driver and mappings exclusively; nothing else refers to them, so
// moving it to another thread is sound.
unsafe impl<D: Driver> Send for V4l2Camera<D> {}

impl V4l2Camera<Kernel> {
    /// Opens `path`, asks for `width` x `height` YUYV (MJPEG accepted if that is what the driver
    /// picks), maps its buffers and starts streaming.
    pub fn open(path: &Path, width: u32, height: u32) -> Result<Self> {
        V4l2Camera::start(Kernel::open(path)?, path, width, height)
    }
}

impl<D: Driver> V4l2Camera<D> {
    /// Starts streaming from `driver`; `path` names the device in messages.
    pub(crate) fn start(driver: D, path: &Path, width: u32, height: u32) -> Result<Self> {
        let mut camera = V4l2Camera {
            path: path.to_owned(),
            driver,
            buffers: Vec::new(),
            format: PixFormat::default(),
        };
        camera.negotiate(width, height)?;
        Ok(camera)
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::Camera(format!("{}: {what}", self.path.display()))
    }

    fn ioctl<T>(&mut self, request: libc::c_ulong, argument: &mut T, what: &str) -> Result<()> {
        loop {
            // SAFETY: `argument` is a live, exclusively borrowed #[repr(C)] value whose size is
            // the one encoded in `request` (the constants above derive it from the type).
            let result = unsafe { self.driver.ioctl(request, (argument as *mut T).cast()) };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error(format_args!("{what}: {e}"))),
            }
        }
    }

    fn negotiate(&mut self, width: u32, height: u32) -> Result<()> {
        let mut capability = Capability::default();
        self.ioctl(
            VIDIOC_QUERYCAP,
            &mut capability,
            "not a V4L2 device (VIDIOC_QUERYCAP)",
        )?;
        let caps = if capability.capabilities & CAP_DEVICE_CAPS != 0 {
            capability.device_caps
        } else {
            capability.capabilities
        };
        if caps & CAP_VIDEO_CAPTURE == 0 || caps & CAP_STREAMING == 0 {
            return Err(self.error("not a streaming video capture device"));
        }

        let mut format = Format {
            kind: BUF_TYPE_VIDEO_CAPTURE,
            union: FormatUnion { raw: [0; 25] },
        };
        format.union.pix = PixFormat {
            width,
            height,
            pixelformat: YUYV,
            ..PixFormat::default()
        };
        self.ioctl(VIDIOC_S_FMT, &mut format, "setting the format")?;
        // SAFETY: the driver filled the `pix` member for a VIDEO_CAPTURE format.
        self.format = unsafe { format.union.pix };
        if self.format.pixelformat != YUYV && self.format.pixelformat != MJPG {
            return Err(self.error(format_args!(
                "the driver offers pixel format {:?}; only YUYV and MJPG are read",
                self.format.pixelformat.to_le_bytes().map(char::from)
            )));
        }

        let mut request = RequestBuffers {
            count: BUFFERS,
            kind: BUF_TYPE_VIDEO_CAPTURE,
            memory: MEMORY_MMAP,
            ..RequestBuffers::default()
        };
        self.ioctl(VIDIOC_REQBUFS, &mut request, "requesting buffers")?;
        if request.count == 0 {
            return Err(self.error("the driver granted no buffers"));
        }
        for index in 0..request.count {
            let mut buffer = Self::buffer(index);
            self.ioctl(VIDIOC_QUERYBUF, &mut buffer, "querying a buffer")?;
            let length = buffer.length as usize;
            let pointer = self
                .driver
                .map(length, buffer.offset as u32)
                .map_err(|e| self.error(format_args!("mapping buffer {index}: {e}")))?;
            self.buffers.push(Mapped { pointer, length });
            self.ioctl(VIDIOC_QBUF, &mut buffer, "queueing a buffer")?;
        }
        let mut kind = BUF_TYPE_VIDEO_CAPTURE;
        self.ioctl(VIDIOC_STREAMON, &mut kind, "starting the stream")?;
        tracing::info!(
            camera = %self.path.display(),
            width = self.format.width,
            height = self.format.height,
            format = ?self.format.pixelformat.to_le_bytes().map(char::from),
            buffers = self.buffers.len(),
            "camera streaming"
        );
        Ok(())
    }

    fn buffer(index: u32) -> Buffer {
        Buffer {
            index,
            kind: BUF_TYPE_VIDEO_CAPTURE,
            memory: MEMORY_MMAP,
            ..Buffer::default()
        }
    }

    /// Waits up to `timeout_ms` for a filled buffer; `None` on timeout.
    fn dequeue(&mut self, timeout_ms: i32) -> Result<Option<Buffer>> {
        match self.driver.poll(timeout_ms) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(self.error(format_args!("waiting for a frame: {e}"))),
        }
        let mut buffer = Self::buffer(0);
        self.ioctl(VIDIOC_DQBUF, &mut buffer, "dequeueing a frame")?;
        Ok(Some(buffer))
    }

    fn frame(&self, buffer: &Buffer) -> Result<RgbImage> {
        let mapped = self
            .buffers
            .get(buffer.index as usize)
            .ok_or_else(|| self.error(format_args!("unknown buffer index {}", buffer.index)))?;
        let used = (buffer.bytesused as usize).min(mapped.length);
        // SAFETY: the mapping is `length` bytes long and stays mapped while `self` lives; the
        // driver does not write a dequeued buffer until it is queued again.
        let bytes = unsafe { std::slice::from_raw_parts(mapped.pointer.cast_const(), used) };
        let (width, height) = (self.format.width, self.format.height);
        if self.format.pixelformat == MJPG {
            return image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                .map(|i| i.to_rgb8())
                .map_err(|e| Error::Image(format!("MJPEG frame: {e}")));
        }
        let stride = (self.format.bytesperline as usize).max(2 * width as usize);
        yuyv_to_rgb(bytes, width, height, stride)
            .ok_or_else(|| Error::Image(format!("YUYV frame of {used} bytes is too short")))
    }
}

impl<D: Driver> crate::camera::Camera for V4l2Camera<D> {
    fn capture(&mut self) -> Result<Option<RgbImage>> {
        let Some(mut buffer) = self.dequeue(1000)? else {
            return Ok(None);
        };
        // The buffer goes back to the driver whether or not its frame decodes.
        let frame = self.frame(&buffer);
        self.ioctl(VIDIOC_QBUF, &mut buffer, "queueing a buffer")?;
        frame.map(Some)
    }

    fn flush(&mut self) -> Result<()> {
        while let Some(mut buffer) = self.dequeue(0)? {
            self.ioctl(VIDIOC_QBUF, &mut buffer, "queueing a buffer")?;
        }
        Ok(())
    }
}

impl<D: Driver> Drop for V4l2Camera<D> {
    fn drop(&mut self) {
        let mut kind = BUF_TYPE_VIDEO_CAPTURE;
        let _ = self.ioctl(VIDIOC_STREAMOFF, &mut kind, "stopping the stream");
        for mapped in std::mem::take(&mut self.buffers) {
            // SAFETY: each pointer/length pair came from a successful map above, taken once.
            unsafe { self.driver.unmap(mapped.pointer, mapped.length) };
        }
    }
}

/// Packed YUYV (BT.601, limited range) to RGB; `None` if `bytes` is shorter than the frame.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32, stride: usize) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || bytes.len() < stride * h.saturating_sub(1) + 2 * w {
        return None;
    }
    let mut rgb = vec![0u8; w * h * 3];
    let convert = |y: u8, u: u8, v: u8| {
        let c = (y as i32 - 16) * 298;
        let d = u as i32 - 128;
        let e = v as i32 - 128;
        let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
        [
            clamp(c + 409 * e),
            clamp(c - 100 * d - 208 * e),
            clamp(c + 516 * d),
        ]
    };
    for row in 0..h {
        let line = &bytes[row * stride..row * stride + 2 * w];
        for (pair, quad) in line.chunks_exact(4).enumerate() {
            let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
            let out = (row * w + 2 * pair) * 3;
            rgb[out..out + 3].copy_from_slice(&convert(y0, u, v));
            rgb[out + 3..out + 6].copy_from_slice(&convert(y1, u, v));
        }
    }
    RgbImage::from_raw(width, height, rgb)
}

#[cfg(test)]
mod simulated;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_match_the_kernel_abi() {
        // Sizes and request numbers of linux/videodev2.h on LP64.
        assert_eq!(size_of::<Capability>(), 104);
        assert_eq!(size_of::<Format>(), 208);
        assert_eq!(size_of::<RequestBuffers>(), 20);
        assert_eq!(size_of::<Buffer>(), 88);
        assert_eq!(std::mem::offset_of!(Buffer, timestamp), 24);
        assert_eq!(std::mem::offset_of!(Buffer, offset), 64);
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
        assert_eq!(VIDIOC_QUERYBUF, 0xc058_5609);
        assert_eq!(VIDIOC_QBUF, 0xc058_560f);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
        assert_eq!(VIDIOC_STREAMOFF, 0x4004_5613);
        assert_eq!(YUYV, 0x5659_5559);
    }

    #[test]
    fn yuyv_converts_grey_and_primaries() {
        // Y=16 black, Y=235 white, neutral chroma; then a saturated red pair (Y 81, U 90, V 240).
        let bytes = [16, 128, 235, 128, 81, 90, 81, 240];
        let image = yuyv_to_rgb(&bytes, 4, 1, 8).unwrap();
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(1, 0).0, [255, 255, 255]);
        let red = image.get_pixel(2, 0).0;
        assert!(red[0] > 240 && red[1] < 15 && red[2] < 15, "{red:?}");
        assert!(yuyv_to_rgb(&bytes[..6], 4, 1, 8).is_none());
        assert!(yuyv_to_rgb(&bytes, 3, 1, 8).is_none());
    }

    #[test]
    fn files_that_are_not_cameras_are_refused() {
        let error = V4l2Camera::open(Path::new("/dev/null"), 640, 480)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not a V4L2 device"), "{error}");
        let error = V4l2Camera::open(Path::new("/dev/video-missing"), 640, 480)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/dev/video-missing"), "{error}");
    }
}

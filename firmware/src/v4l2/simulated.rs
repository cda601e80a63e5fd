//! A simulated V4L2 capture driver behind [`Driver`], so the whole capture sequence (capability
//! check, format negotiation, buffer requests, mapping, queueing, streaming, dequeueing,
//! stopping) runs in tests without a camera. It reads and writes its arguments at the byte
//! offsets of `linux/videodev2.h` on LP64 and matches the kernel's request numbers, not the
//! structures and constants of the module under test.
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use image::RgbImage;

use super::{Driver, V4l2Camera, MJPG, YUYV};
use crate::camera::Camera;

const QUERYCAP: libc::c_ulong = 0x8068_5600;
const S_FMT: libc::c_ulong = 0xc0d0_5605;
const REQBUFS: libc::c_ulong = 0xc014_5608;
const QUERYBUF: libc::c_ulong = 0xc058_5609;
const QBUF: libc::c_ulong = 0xc058_560f;
const DQBUF: libc::c_ulong = 0xc058_5611;
const STREAMON: libc::c_ulong = 0x4004_5612;
const STREAMOFF: libc::c_ulong = 0x4004_5613;

/// What the simulated device offers and what happened to it; shared with the test.
#[derive(Default)]
struct State {
    /// `capabilities` and `device_caps` of VIDIOC_QUERYCAP.
    caps: (u32, u32),
    /// The format the driver settles on: `None` echoes the request (with YUYV's stride).
    offered: Option<(u32, u32, u32)>,
    /// Frames the "sensor" will deliver, oldest first.
    pending: VecDeque<Vec<u8>>,
    memory: Vec<Vec<u8>>,
    queued: VecDeque<u32>,
    filled: VecDeque<(u32, usize)>,
    streaming: bool,
    sequence: u32,
    mapped: usize,
    unmapped: usize,
    log: Vec<&'static str>,
}

struct Simulated(Arc<Mutex<State>>);

unsafe fn get(argument: *mut libc::c_void, offset: usize) -> u32 {
    // SAFETY: the caller passes an argument at least `offset + 4` bytes long.
    unsafe {
        argument
            .cast::<u8>()
            .add(offset)
            .cast::<u32>()
            .read_unaligned()
    }
}

unsafe fn set(argument: *mut libc::c_void, offset: usize, value: u32) {
    // SAFETY: as for `get`.
    unsafe {
        argument
            .cast::<u8>()
            .add(offset)
            .cast::<u32>()
            .write_unaligned(value)
    }
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

const BUFFER_BYTES: usize = 640 * 480 * 2;

impl Driver for Simulated {
    unsafe fn ioctl(
        &mut self,
        request: libc::c_ulong,
        argument: *mut libc::c_void,
    ) -> io::Result<()> {
        let mut state = self.0.lock().unwrap();
        // SAFETY (all get/set below): the caller passes an argument of the size `request`
        // encodes, and every offset read is inside that size.
        unsafe {
            match request {
                QUERYCAP => {
                    state.log.push("QUERYCAP");
                    set(argument, 84, state.caps.0);
                    set(argument, 88, state.caps.1);
                }
                S_FMT => {
                    state.log.push("S_FMT");
                    if get(argument, 0) != 1 {
                        return Err(invalid());
                    }
                    let (width, height, fourcc) = state.offered.unwrap_or((
                        get(argument, 8),
                        get(argument, 12),
                        get(argument, 16),
                    ));
                    set(argument, 8, width);
                    set(argument, 12, height);
                    set(argument, 16, fourcc);
                    set(argument, 24, if fourcc == YUYV { 2 * width } else { 0 });
                    set(argument, 28, 2 * width * height);
                }
                REQBUFS => {
                    state.log.push("REQBUFS");
                    if get(argument, 4) != 1 || get(argument, 8) != 1 {
                        return Err(invalid());
                    }
                    // Grants one buffer fewer than asked, as drivers may.
                    let count = get(argument, 0).saturating_sub(1);
                    state.memory = vec![vec![0; BUFFER_BYTES]; count as usize];
                    set(argument, 0, count);
                }
                QUERYBUF => {
                    let index = get(argument, 0);
                    if index as usize >= state.memory.len() || get(argument, 60) != 1 {
                        return Err(invalid());
                    }
                    set(argument, 64, 0x10_0000 * (index + 1));
                    set(argument, 72, BUFFER_BYTES as u32);
                }
                QBUF => {
                    let index = get(argument, 0);
                    if index as usize >= state.memory.len()
                        || get(argument, 60) != 1
                        || state.queued.contains(&index)
                        || state.filled.iter().any(|(queued, _)| *queued == index)
                    {
                        return Err(invalid());
                    }
                    state.queued.push_back(index);
                }
                DQBUF => {
                    let Some((index, used)) = state.filled.pop_front() else {
                        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                    };
                    state.sequence += 1;
                    set(argument, 0, index);
                    set(argument, 8, used as u32);
                    set(argument, 56, state.sequence);
                    set(argument, 60, 1);
                }
                STREAMON => {
                    state.log.push("STREAMON");
                    if get(argument, 0) != 1 || state.queued.is_empty() {
                        return Err(invalid());
                    }
                    state.streaming = true;
                }
                STREAMOFF => {
                    state.log.push("STREAMOFF");
                    state.streaming = false;
                }
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTTY)),
            }
        }
        Ok(())
    }

    fn map(&mut self, length: usize, offset: u32) -> io::Result<*mut u8> {
        let mut state = self.0.lock().unwrap();
        let index = (offset / 0x10_0000) as usize;
        if !offset.is_multiple_of(0x10_0000) || index == 0 || length != BUFFER_BYTES {
            return Err(invalid());
        }
        state.mapped += 1;
        let memory = state.memory.get_mut(index - 1).ok_or_else(invalid)?;
        Ok(memory.as_mut_ptr())
    }

    unsafe fn unmap(&mut self, _pointer: *mut u8, _length: usize) {
        self.0.lock().unwrap().unmapped += 1;
    }

    fn poll(&mut self, _timeout_ms: i32) -> io::Result<bool> {
        let mut state = self.0.lock().unwrap();
        // The sensor fills the oldest queued buffer with the next frame, if it has both.
        while state.streaming && !state.pending.is_empty() && !state.queued.is_empty() {
            let frame = state.pending.pop_front().unwrap();
            let index = state.queued.pop_front().unwrap();
            let used = frame.len().min(BUFFER_BYTES);
            state.memory[index as usize][..used].copy_from_slice(&frame[..used]);
            state.filled.push_back((index, used));
        }
        Ok(!state.filled.is_empty())
    }
}

fn device(offered: Option<(u32, u32, u32)>) -> (Arc<Mutex<State>>, Simulated) {
    let state = Arc::new(Mutex::new(State {
        caps: (0x8000_0000 | 0x0400_0001, 0x0400_0001),
        offered,
        ..State::default()
    }));
    (state.clone(), Simulated(state))
}

/// A uniform YUYV frame of luma `y`, neutral chroma.
fn grey(width: u32, height: u32, y: u8) -> Vec<u8> {
    [y, 128].repeat((width * height) as usize)
}

/// The RGB value of luma `y` with neutral chroma (BT.601 limited range).
fn rgb_of(y: u8) -> u8 {
    ((y as f32 - 16.0) * 255.0 / 219.0)
        .round()
        .clamp(0.0, 255.0) as u8
}

fn open(driver: Simulated) -> crate::error::Result<V4l2Camera<Simulated>> {
    V4l2Camera::start(driver, Path::new("/dev/video-simulated"), 640, 480)
}

#[test]
fn frames_stream_in_order_through_reused_buffers() {
    let (state, driver) = device(None);
    let lumas: Vec<u8> = (0..10).map(|i| 30 + 20 * i).collect();
    state.lock().unwrap().pending = lumas.iter().map(|&y| grey(640, 480, y)).collect();
    let mut camera = open(driver).unwrap();
    assert_eq!(state.lock().unwrap().memory.len(), 3);
    assert_eq!(state.lock().unwrap().mapped, 3);
    // Ten frames through three buffers: each is handed back after its frame is read.
    for &y in &lumas {
        let frame = camera.capture().unwrap().expect("a frame");
        assert_eq!(frame.dimensions(), (640, 480));
        let pixel = frame.get_pixel(320, 240).0;
        assert!(
            pixel.iter().all(|&c| c.abs_diff(rgb_of(y)) <= 1),
            "{pixel:?} for Y={y}"
        );
    }
    assert!(camera.capture().unwrap().is_none());
    drop(camera);
    let state = state.lock().unwrap();
    assert_eq!(state.sequence, 10);
    assert_eq!(state.unmapped, 3);
    assert!(!state.streaming);
    assert_eq!(
        state.log,
        ["QUERYCAP", "S_FMT", "REQBUFS", "STREAMON", "STREAMOFF"]
    );
}

#[test]
fn flush_drops_the_frames_already_captured() {
    let (state, driver) = device(None);
    state.lock().unwrap().pending = (0..3).map(|_| grey(640, 480, 16)).collect();
    let mut camera = open(driver).unwrap();
    camera.flush().unwrap();
    assert!(camera.capture().unwrap().is_none());
    state.lock().unwrap().pending.push_back(grey(640, 480, 235));
    let frame = camera.capture().unwrap().unwrap();
    assert_eq!(frame.get_pixel(0, 0).0, [255, 255, 255]);
}

#[test]
fn the_driver_may_pick_the_size_and_mjpeg() {
    let (state, driver) = device(Some((320, 240, MJPG)));
    let picture = RgbImage::from_pixel(320, 240, image::Rgb([200, 40, 40]));
    let mut jpeg = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    state.lock().unwrap().pending.push_back(jpeg);
    let mut camera = open(driver).unwrap();
    let frame = camera.capture().unwrap().unwrap();
    assert_eq!(frame.dimensions(), (320, 240));
    let pixel = frame.get_pixel(160, 120).0;
    assert!(
        pixel[0] > 180 && pixel[1] < 70 && pixel[2] < 70,
        "{pixel:?}"
    );
}

#[test]
fn a_short_frame_is_an_error_and_its_buffer_goes_back() {
    let (state, driver) = device(None);
    state.lock().unwrap().pending = [vec![16; 1000], grey(640, 480, 235)].into();
    let mut camera = open(driver).unwrap();
    let error = camera.capture().unwrap_err().to_string();
    assert!(error.contains("too short"), "{error}");
    assert_eq!(
        camera.capture().unwrap().unwrap().get_pixel(5, 5).0,
        [255, 255, 255]
    );
    assert_eq!(state.lock().unwrap().queued.len(), 3);
}

#[test]
fn devices_that_cannot_stream_or_only_offer_other_formats_are_named() {
    let (state, driver) = device(None);
    state.lock().unwrap().caps = (0x0000_0001, 0);
    let error = open(driver).err().unwrap().to_string();
    assert!(
        error.contains("/dev/video-simulated: not a streaming video capture device"),
        "{error}"
    );

    let (state, driver) = device(Some((640, 480, u32::from_le_bytes(*b"GREY"))));
    let error = open(driver).err().unwrap().to_string();
    assert!(error.contains("['G', 'R', 'E', 'Y']"), "{error}");
    assert!(error.contains("only YUYV and MJPG"), "{error}");
    // The failed start still stops the stream on the way out, and mapped nothing.
    let state = state.lock().unwrap();
    assert_eq!((state.mapped, state.unmapped), (0, 0));
    assert_eq!(state.log, ["QUERYCAP", "S_FMT", "STREAMOFF"]);
}

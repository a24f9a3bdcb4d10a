//! A V4L2 camera (a USB webcam) through `nokhwa`.

use super::{Frame, FrameSource, SourceConfig, SourceError};

/// A V4L2 camera through `nokhwa`.
pub struct CameraSource {
    device: u32,
    camera: nokhwa::Camera,
}

impl CameraSource {
    pub(super) fn open(config: &SourceConfig) -> Result<CameraSource, SourceError> {
        use nokhwa::pixel_format::RgbFormat;
        use nokhwa::utils::{
            CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
            Resolution,
        };
        let fail = |err: nokhwa::NokhwaError| SourceError {
            source_name: format!("/dev/video{}", config.device),
            reason: format!(
                "{err}; check that the camera is plugged in and the agent's user is in the `video` group"
            ),
        };
        let format = CameraFormat::new(
            Resolution::new(config.width, config.height),
            FrameFormat::MJPEG,
            config.rate.round().max(1.0) as u32,
        );
        let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(format));
        let mut camera =
            nokhwa::Camera::new(CameraIndex::Index(config.device), requested).map_err(fail)?;
        camera.open_stream().map_err(fail)?;
        Ok(CameraSource {
            device: config.device,
            camera,
        })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let fail = |err: nokhwa::NokhwaError| SourceError {
            source_name: format!("/dev/video{}", self.device),
            reason: format!("{err}; the camera may have been unplugged"),
        };
        let buffer = self.camera.frame().map_err(fail)?;
        if buffer.source_frame_format() == nokhwa::utils::FrameFormat::MJPEG {
            return Ok(Some(Frame::Encoded(buffer.buffer().to_vec())));
        }
        let image = buffer
            .decode_image::<nokhwa::pixel_format::RgbFormat>()
            .map_err(fail)?;
        Ok(Some(Frame::Rgb(image)))
    }
}

//! An IP camera's MJPEG stream over HTTP or HTTPS, through `ureq`.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use super::{Frame, FrameSource, MAX_FRAME_BYTES, SourceError};

/// An IP camera's MJPEG stream over HTTP or HTTPS, read through `ureq`.
///
/// The stream is a multipart/x-mixed-replace body: each part is one frame,
/// cut by the boundary the camera names in its Content-Type and by the part's
/// own Content-Length when it gives one, never by JPEG markers (a frame may
/// carry an EXIF thumbnail, itself a whole JPEG). Credentials come from the
/// URL (`http://user:password@host/...`, sent as basic auth); the password
/// never appears in an error, a log line or /healthz.
pub struct IpCameraSource {
    camera: String,
    parts: MultipartParts<BufReader<ureq::BodyReader<'static>>>,
}

/// How long a camera is given to accept the connection, and then to send
/// anything at all, before it counts as gone and is reopened with back-off.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest header line of a part; cameras send a handful of short ones.
const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;

const URL_HINT: &str =
    "give the camera's MJPEG stream, such as `http://user:password@192.168.1.20/video.mjpg`";

/// The camera's URL as it may be shown: any password replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// Checks that `url` is an http:// or https:// URL with a host; the reason it is not otherwise.
pub fn check_camera_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|err| format!("`{}` is not a URL ({err})", without_password(url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "`{}` is not an http:// or https:// URL",
            without_password(url)
        ));
    }
    Ok(())
}

impl IpCameraSource {
    pub(super) fn open(url: &str) -> Result<IpCameraSource, SourceError> {
        let camera = without_password(url);
        let password = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next()?.rsplit_once('@'));
        let password = password
            .and_then(|(user_info, _)| user_info.split_once(':'))
            .map(|(_, password)| password.to_owned());
        let fail = |reason: String| SourceError {
            source_name: camera.clone(),
            reason: match &password {
                Some(password) if !password.is_empty() => reason.replace(password.as_str(), "***"),
                _ => reason,
            },
        };
        check_camera_url(url).map_err(|reason| fail(format!("{reason}; {URL_HINT}")))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .http_status_as_error(false)
            .user_agent("firmware-agent")
            .build()
            .into();
        let response = agent
            .get(url)
            .call()
            .map_err(|err| fail(why_not_connected(err)))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            401 | 403 => {
                return Err(fail(format!(
                    "the camera refused the credentials (HTTP {status}); put its user and password in the URL, as `http://user:password@192.168.1.20/video.mjpg`"
                )));
            }
            _ => {
                return Err(fail(format!(
                    "the camera answered HTTP {status}; check the stream's path in `attendance.source.url` against the camera's manual"
                )));
            }
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let boundary = boundary_of(&content_type).ok_or_else(|| {
            fail(format!(
                "the camera sent `{content_type}`, not an MJPEG stream (multipart/x-mixed-replace with a boundary); {URL_HINT}"
            ))
        })?;
        let body = BufReader::with_capacity(64 * 1024, response.into_body().into_reader());
        Ok(IpCameraSource {
            camera,
            parts: MultipartParts::new(body, &boundary),
        })
    }
}

/// Why the camera could not be reached, with what to check.
fn why_not_connected(err: ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(_) => {
            format!(
                "the camera did not answer within {} s; check that it is on and reachable from this room",
                READ_TIMEOUT.as_secs()
            )
        }
        ureq::Error::HostNotFound => {
            "cannot resolve the camera's host name; give its IP address in the URL".to_owned()
        }
        ureq::Error::ConnectionFailed => {
            "cannot connect to the camera; check that it is on and the URL's host and port"
                .to_owned()
        }
        ureq::Error::Io(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "cannot connect to the camera ({err}); check that it is on and the URL's host and port"
            )
        }
        other => format!("cannot open the stream: {other}"),
    }
}

/// The boundary a multipart Content-Type names, without quotes.
fn boundary_of(content_type: &str) -> Option<String> {
    let mut fields = content_type.split(';');
    if !fields
        .next()?
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        return None;
    }
    fields
        .filter_map(|field| field.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|boundary| !boundary.is_empty())
}

impl FrameSource for IpCameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let fail = |reason: String| SourceError {
            source_name: self.camera.clone(),
            reason,
        };
        match self.parts.next_part().map_err(fail)? {
            Some(part) => Ok(Some(Frame::Encoded(part))),
            None => Err(fail("the camera closed the stream".to_owned())),
        }
    }
}

/// The parts of a multipart body, read one at a time.
struct MultipartParts<R> {
    input: R,
    /// The lines that start a part: `--boundary`, and the boundary itself when
    /// the camera already wrote the dashes into it (some do).
    delimiters: Vec<Vec<u8>>,
    /// The delimiter before the next part was read already, ending a part that had no Content-Length.
    at_headers: bool,
    /// The closing delimiter (`--boundary--`) was read.
    closed: bool,
}

/// A line of the body, by what it means.
enum Line {
    Delimiter,
    Closing,
    Content,
}

impl<R: BufRead> MultipartParts<R> {
    fn new(input: R, boundary: &str) -> Self {
        let mut delimiters = vec![format!("--{boundary}").into_bytes()];
        if boundary.starts_with("--") {
            delimiters.push(boundary.as_bytes().to_vec());
        }
        MultipartParts {
            input,
            delimiters,
            at_headers: false,
            closed: false,
        }
    }

    /// The next part's bytes; `None` at the end of the stream.
    fn next_part(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.closed {
            return Ok(None);
        }
        if !self.at_headers && !self.skip_to_delimiter()? {
            return Ok(None);
        }
        self.at_headers = false;
        let length = self.read_headers()?;
        match length {
            Some(length) if length > MAX_FRAME_BYTES => Err(format!(
                "a part of {length} bytes is larger than the {} MiB a frame may be; lower the camera's resolution or quality",
                MAX_FRAME_BYTES >> 20
            )),
            Some(length) => {
                let mut part = vec![0; length];
                self.input
                    .read_exact(&mut part)
                    .map_err(|err| stream_error(&err))?;
                Ok(Some(part))
            }
            None => self.read_to_delimiter().map(Some),
        }
    }

    /// Reads up to the delimiter that starts a part; false if the stream ended first.
    fn skip_to_delimiter(&mut self) -> Result<bool, String> {
        let mut skipped = 0;
        loop {
            let mut line = Vec::new();
            if !self.read_line(&mut line, MAX_HEADER_LINE_BYTES)? {
                return Ok(false);
            }
            match self.classify(&line) {
                Line::Delimiter => return Ok(true),
                Line::Closing => {
                    self.closed = true;
                    return Ok(false);
                }
                Line::Content => skipped += line.len(),
            }
            if skipped > MAX_FRAME_BYTES {
                return Err(format!(
                    "no boundary `{}` in {} MiB of the stream; the camera's stream is not the MJPEG it announced",
                    String::from_utf8_lossy(&self.delimiters[0]),
                    MAX_FRAME_BYTES >> 20
                ));
            }
        }
    }

    /// Reads a part's headers up to the blank line; its Content-Length if it gives one.
    fn read_headers(&mut self) -> Result<Option<usize>, String> {
        let mut length = None;
        loop {
            let mut line = Vec::new();
            if !self.read_line(&mut line, MAX_HEADER_LINE_BYTES)? {
                return Err("the camera closed the stream inside a part's headers".to_owned());
            }
            if !line.ends_with(b"\n") {
                return Err(format!(
                    "a part's header line is longer than {} KiB",
                    MAX_HEADER_LINE_BYTES >> 10
                ));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                return Ok(length);
            }
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                let value = value.trim();
                length = Some(value.parse().map_err(|_| {
                    format!("a part's Content-Length `{value}` is not a number of bytes")
                })?);
            }
        }
    }

    /// Reads a part that gave no Content-Length, up to the next delimiter.
    fn read_to_delimiter(&mut self) -> Result<Vec<u8>, String> {
        let mut part = Vec::new();
        loop {
            let mut line = Vec::new();
            if !self.read_line(&mut line, MAX_FRAME_BYTES + 1 - part.len())? {
                return Err("the camera closed the stream in the middle of a frame".to_owned());
            }
            match self.classify(&line) {
                Line::Content => part.extend_from_slice(&line),
                delimiter => {
                    self.at_headers = matches!(delimiter, Line::Delimiter);
                    self.closed = matches!(delimiter, Line::Closing);
                    let body_end = part
                        .strip_suffix(b"\r\n")
                        .or_else(|| part.strip_suffix(b"\n"))
                        .map_or(part.len(), <[u8]>::len);
                    part.truncate(body_end);
                    return Ok(part);
                }
            }
            if part.len() > MAX_FRAME_BYTES {
                return Err(format!(
                    "a part without Content-Length ran past {} MiB without its boundary; lower the camera's resolution or quality",
                    MAX_FRAME_BYTES >> 20
                ));
            }
        }
    }

    /// Appends one line (at most `limit` bytes) to `line`; false at the end of the stream.
    fn read_line(&mut self, line: &mut Vec<u8>, limit: usize) -> Result<bool, String> {
        let read = (&mut self.input)
            .take(limit as u64)
            .read_until(b'\n', line)
            .map_err(|err| stream_error(&err))?;
        Ok(read > 0)
    }

    fn classify(&self, line: &[u8]) -> Line {
        let line = line.trim_ascii_end();
        if self
            .delimiters
            .iter()
            .any(|delimiter| line == delimiter.as_slice())
        {
            Line::Delimiter
        } else if self
            .delimiters
            .iter()
            .any(|delimiter| line.strip_suffix(b"--") == Some(delimiter.as_slice()))
        {
            Line::Closing
        } else {
            Line::Content
        }
    }
}

/// A failed read of the stream, in words for IT staff.
fn stream_error(err: &std::io::Error) -> String {
    let timed_out = matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || matches!(
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>()),
        Some(ureq::Error::Timeout(_))
    );
    match err.kind() {
        _ if timed_out => format!(
            "the camera sent nothing for {} s; check that it is on and reachable, it is reopened meanwhile",
            READ_TIMEOUT.as_secs()
        ),
        std::io::ErrorKind::UnexpectedEof => {
            "the camera closed the stream in the middle of a frame".to_owned()
        }
        _ => format!("the stream broke: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    use image::RgbImage;

    use super::*;

    /// A real JPEG of `side` pixels square.
    fn jpeg(side: u32, shade: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        let image = RgbImage::from_pixel(side, side, image::Rgb([shade, 40, 90]));
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode_image(&image)
            .unwrap();
        bytes
    }

    /// A JPEG whose EXIF segment (APP1) carries a thumbnail, itself a whole JPEG
    /// with its own start and end markers, as many cameras send.
    fn jpeg_with_exif_thumbnail() -> Vec<u8> {
        let photo = jpeg(64, 200);
        let payload = [b"Exif\0\0".as_slice(), &jpeg(8, 10)].concat();
        let length = u16::try_from(payload.len() + 2).unwrap().to_be_bytes();
        [&photo[..2], &[0xFF, 0xE1], &length, &payload, &photo[2..]].concat()
    }

    /// How the test camera answers one connection, given its request head.
    type Answer = Box<dyn FnOnce(&str, &mut TcpStream) + Send>;

    /// A camera on loopback: each connection's request head is handed to the
    /// next answer in turn, which writes the response.
    fn camera(answers: Vec<Answer>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    stream.read_exact(&mut byte).unwrap();
                    request.push(byte[0]);
                }
                answer(&String::from_utf8_lossy(&request), &mut stream);
            }
        });
        (address, server)
    }

    const MJPEG_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";

    fn part(frame: &[u8], with_length: bool) -> Vec<u8> {
        let length = if with_length {
            format!("Content-Length: {}\r\n", frame.len())
        } else {
            String::new()
        };
        [
            format!("--frame\r\nContent-Type: image/jpeg\r\n{length}\r\n").as_bytes(),
            frame,
            b"\r\n",
        ]
        .concat()
    }

    fn next_encoded(source: &mut IpCameraSource) -> Vec<u8> {
        match source.next_frame() {
            Ok(Some(Frame::Encoded(bytes))) => bytes,
            Ok(_) => panic!("an encoded frame"),
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn a_frame_carrying_an_exif_thumbnail_is_one_frame() {
        let frame = jpeg_with_exif_thumbnail();
        image::load_from_memory(&frame).expect("the test frame is a valid JPEG");
        let served = frame.clone();
        let (address, server) = camera(vec![Box::new(move |_, stream| {
            stream.write_all(MJPEG_HEAD).unwrap();
            for _ in 0..2 {
                stream.write_all(&part(&served, false)).unwrap();
            }
            stream.write_all(b"--frame--\r\n").unwrap();
        })]);
        let mut source = IpCameraSource::open(&format!("http://{address}/video.mjpg")).unwrap();
        for _ in 0..2 {
            let bytes = next_encoded(&mut source);
            assert_eq!(
                bytes.len(),
                frame.len(),
                "the whole frame, thumbnail included"
            );
            assert_eq!(bytes, frame);
        }
        server.join().unwrap();
        assert!(
            source
                .next_frame()
                .err()
                .expect("the stream's end")
                .to_string()
                .contains("closed the stream")
        );
    }

    #[test]
    fn the_camera_asks_for_credentials_and_gets_them_from_the_url_never_shown() {
        let frame = jpeg(16, 7);
        let served = frame.clone();
        let authorised = |request: &str| {
            request.lines().any(|line| {
                line.eq_ignore_ascii_case("authorization: basic dGVhY2hlcjpjYW0tczNjcmV0")
            })
        };
        let refuse = move |request: &str, stream: &mut TcpStream| {
            assert!(!authorised(request));
            stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\n\r\n").unwrap();
        };
        let (address, server) = camera(vec![
            Box::new(refuse),
            Box::new(refuse),
            Box::new(move |request, stream| {
                assert!(authorised(request), "basic auth from the URL: {request}");
                stream.write_all(MJPEG_HEAD).unwrap();
                stream.write_all(&part(&served, true)).unwrap();
            }),
        ]);
        let err = IpCameraSource::open(&format!("http://{address}/video.mjpg"))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("refused the credentials (HTTP 401)") && err.contains("user:password@"),
            "{err}"
        );
        let err =
            IpCameraSource::open(&format!("http://teacher:wrong-s3cret@{address}/video.mjpg"))
                .err()
                .expect("refused")
                .to_string();
        assert!(
            err.starts_with(&format!("http://teacher:***@{address}/video.mjpg: ")),
            "{err}"
        );
        assert!(!err.contains("wrong-s3cret"), "{err}");
        let mut source =
            IpCameraSource::open(&format!("http://teacher:cam-s3cret@{address}/video.mjpg"))
                .unwrap();
        assert_eq!(next_encoded(&mut source), frame);
        server.join().unwrap();
        let err = source
            .next_frame()
            .err()
            .expect("the camera vanished")
            .to_string();
        assert!(
            err.contains("closed the stream") && !err.contains("cam-s3cret"),
            "{err}"
        );
    }

    #[test]
    fn a_chunked_stream_is_read_whole_across_chunks() {
        let frames = [jpeg(16, 1), jpeg_with_exif_thumbnail(), jpeg(24, 3)];
        let body: Vec<u8> = frames
            .iter()
            .enumerate()
            .flat_map(|(i, frame)| part(frame, i % 2 == 0))
            .collect();
        let (address, server) = camera(vec![Box::new(move |_, stream| {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=\"frame\"\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(head).unwrap();
            for chunk in body.chunks(333) {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .unwrap();
                stream.write_all(chunk).unwrap();
                stream.write_all(b"\r\n").unwrap();
            }
            stream.write_all(b"0\r\n\r\n").unwrap();
        })]);
        let mut source = IpCameraSource::open(&format!("http://{address}/")).unwrap();
        for frame in &frames {
            assert_eq!(&next_encoded(&mut source), frame);
        }
        server.join().unwrap();
        assert!(
            source
                .next_frame()
                .err()
                .expect("the stream's end")
                .to_string()
                .contains("closed the stream")
        );
    }

    #[test]
    fn a_part_is_as_long_as_its_content_length_says_and_no_longer_than_16_mib() {
        // The bytes of this part hold a line that looks like the boundary: only
        // the Content-Length tells where the part really ends.
        let tricky =
            [b"\xFF\xD8 first half\r\n--frame\r\nsecond half \xFF\xD9".as_slice()].concat();
        let served = tricky.clone();
        let (address, server) = camera(vec![Box::new(move |_, stream| {
            stream.write_all(MJPEG_HEAD).unwrap();
            stream.write_all(&part(&served, true)).unwrap();
            stream.write_all(&part(b"next", false)).unwrap();
            stream
                .write_all(format!("--frame\r\nContent-Length: {}\r\n\r\n", 17 << 20).as_bytes())
                .unwrap();
        })]);
        let mut source = IpCameraSource::open(&format!("http://{address}/")).unwrap();
        assert_eq!(next_encoded(&mut source), tricky);
        assert_eq!(next_encoded(&mut source), b"next");
        let err = source.next_frame().err().expect("too large").to_string();
        assert!(
            err.contains("17825792 bytes is larger than the 16 MiB a frame may be"),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_camera_that_stalls_is_an_error_naming_it_without_its_password() {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let frame = jpeg(16, 5);
        let served = frame.clone();
        let (address, server) = camera(vec![Box::new(move |_, stream| {
            stream.write_all(MJPEG_HEAD).unwrap();
            stream.write_all(&part(&served, true)).unwrap();
            let _ = held.recv();
        })]);
        let mut source =
            IpCameraSource::open(&format!("http://admin:st4ll-pass@{address}/video.mjpg")).unwrap();
        assert_eq!(next_encoded(&mut source), frame);
        let asked = Instant::now();
        let err = source
            .next_frame()
            .err()
            .expect("a stalled camera is an error")
            .to_string();
        let waited = asked.elapsed();
        release.send(()).unwrap();
        server.join().unwrap();
        assert!(
            err.starts_with(&format!(
                "http://admin:***@{address}/video.mjpg: the camera sent nothing for 5 s"
            )),
            "{err}"
        );
        assert!(!err.contains("st4ll-pass"), "{err}");
        assert!(
            waited >= READ_TIMEOUT && waited < READ_TIMEOUT * 3,
            "gave up after {waited:?}"
        );
    }

    #[test]
    fn a_camera_url_must_be_http_or_https_and_is_shown_without_its_password() {
        assert_eq!(check_camera_url("https://cam.local/video.mjpg"), Ok(()));
        assert_eq!(
            check_camera_url("http://u:p@192.168.1.20:8080/video.mjpg"),
            Ok(())
        );
        let err = check_camera_url("rtsp://admin:hunter2@192.168.1.20/stream").unwrap_err();
        assert_eq!(
            err,
            "`rtsp://admin:***@192.168.1.20/stream` is not an http:// or https:// URL"
        );
        assert!(check_camera_url("").unwrap_err().contains("is not"));
        assert!(
            check_camera_url("http://exa mple/")
                .unwrap_err()
                .contains("is not a URL")
        );
        assert_eq!(
            without_password("http://admin@cam/x?p=1"),
            "http://admin@cam/x?p=1"
        );
    }
}

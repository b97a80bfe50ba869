//! A reader for PyTorch's *legacy* checkpoint format (`torch.save` before
//! 1.6, or with `_use_new_zipfile_serialization=False`), which candle's
//! zip-based `.pth` reader rejects.
//!
//! Such a file is a run of pickles followed by raw storage bytes:
//!
//! 1. the magic number `0x1950a86a20f9469cfc6c` (a pickled `int`);
//! 2. the protocol version, `1001`;
//! 3. system information (`little_endian`, type sizes);
//! 4. the object itself — here a state dict whose tensors are
//!    `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ..)`
//!    calls, `storage` being a persistent id
//!    `("storage", torch.FloatStorage, key, location, numel, view)`;
//! 5. the list of storage keys, in the order their bytes follow;
//!
//! then, for each key in that order, the element count as an 8-byte
//! little-endian integer followed by the elements, little-endian.
//!
//! The pickles are parsed with [`candle_core::pickle::Stack`], except the
//! magic number: it is a 10-byte `LONG1`, wider than the `i64` candle decodes.
//! Tensors are rebuilt with their stride and offset (the MTCNN and
//! EfficientNet files store weights transposed, in Fortran order), as
//! contiguous candle tensors.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::error::{without_backtrace, Error, Result};

/// The legacy format's magic number (`torch.serialization.MAGIC_NUMBER`).
const MAGIC_NUMBER: u128 = 0x1950a86a20f9469cfc6c;
/// The only protocol version legacy files were written with.
const PROTOCOL_VERSION: i64 = 1001;

/// Reads every tensor of a legacy PyTorch state dict at `path`.
///
/// Errors name the file and, for bad or missing data, the tensor.
pub fn load(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, device).map_err(|reason| Error::Weights {
        path: path.to_path_buf(),
        reason,
    })
}

/// Loads a legacy PyTorch state dict as a [`VarBuilder`] of `f32` tensors.
pub fn var_builder(path: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(VarBuilder::from_tensors(
        load(path, device)?,
        DType::F32,
        device,
    ))
}

/// One tensor of the state dict, before its storage is read.
struct TensorRecord {
    name: String,
    storage_key: String,
    dtype: DType,
    /// In elements of the storage.
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// One storage as the state dict refers to it.
struct StorageRecord {
    dtype: DType,
    numel: usize,
    /// The first tensor that uses it, to name in errors.
    first_user: String,
}

/// Parses a whole legacy file held in memory. The error says what is wrong,
/// naming the tensor where one is involved; the caller adds the file.
pub fn parse(
    bytes: &[u8],
    device: &Device,
) -> std::result::Result<HashMap<String, Tensor>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err("a zip-format PyTorch checkpoint, not the legacy format: \
                    read it with candle_core::pickle::read_all"
            .to_string());
    }
    let mut cursor = Cursor::new(bytes);
    read_magic(&mut cursor)?;

    let version = read_pickle(&mut cursor, "protocol version")?;
    match version.int_or_long() {
        Ok(PROTOCOL_VERSION) => {}
        Ok(other) => return Err(format!("unsupported legacy protocol version {other}")),
        Err(other) => return Err(format!("bad protocol version pickle: {other:?}")),
    }

    let sys_info = read_pickle(&mut cursor, "system info")?;
    if let Object::Dict(entries) = sys_info {
        for (key, value) in entries {
            if key == Object::Unicode("little_endian".into()) && value == Object::Bool(false) {
                return Err("written on a big-endian machine: not supported".to_string());
            }
        }
    }

    let state = read_pickle(&mut cursor, "state dict")?;
    let tensors = tensor_records(state)?;
    let mut storages: HashMap<String, StorageRecord> = HashMap::new();
    for t in &tensors {
        check_view_bounds(t, storages.get(&t.storage_key))?;
        storages
            .entry(t.storage_key.clone())
            .or_insert_with(|| StorageRecord {
                dtype: t.dtype,
                numel: 0,
                first_user: t.name.clone(),
            });
    }

    let keys = match read_pickle(&mut cursor, "storage key list")? {
        Object::List(keys) | Object::Tuple(keys) => keys
            .into_iter()
            .map(|k| k.unicode().map_err(|o| format!("bad storage key {o:?}")))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("expected the storage key list, got {other:?}")),
    };

    // The storages' bytes, in key order, each after its element count.
    let mut data: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = cursor.position() as usize;
    for key in &keys {
        let Some(storage) = storages.get_mut(key) else {
            return Err(format!("storage {key} is listed but no tensor uses it"));
        };
        let user = &storage.first_user;
        let count_end = pos + 8;
        if count_end > bytes.len() {
            return Err(format!(
                "truncated: the data of tensor '{user}' (storage {key}) is missing \
                 (file ends at byte {}, expected an 8-byte element count at {pos})",
                bytes.len()
            ));
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[pos..count_end]);
        let numel = u64::from_le_bytes(count) as usize;
        let len = numel
            .checked_mul(storage.dtype.size_in_bytes())
            .ok_or_else(|| {
                format!("storage {key} of tensor '{user}': bad element count {numel}")
            })?;
        let end = count_end.saturating_add(len);
        if end > bytes.len() {
            return Err(format!(
                "truncated: tensor '{user}' (storage {key}) needs {len} bytes at byte \
                 {count_end}, but the file ends at byte {}",
                bytes.len()
            ));
        }
        storage.numel = numel;
        data.insert(key.clone(), &bytes[count_end..end]);
        pos = end;
    }
    if pos != bytes.len() {
        return Err(format!(
            "{} unexpected bytes after the last storage",
            bytes.len() - pos
        ));
    }

    let mut out = HashMap::with_capacity(tensors.len());
    for t in tensors {
        let Some(raw) = data.get(&t.storage_key) else {
            return Err(format!(
                "tensor '{}': storage {} is not in the storage key list",
                t.name, t.storage_key
            ));
        };
        let storage = &storages[&t.storage_key];
        check_view_bounds(&t, Some(storage))?;
        let contiguous = gather(raw, &t, storage.dtype.size_in_bytes());
        let tensor = Tensor::from_raw_buffer(&contiguous, t.dtype, &t.shape, device)
            .map_err(|e| format!("tensor '{}': {}", t.name, without_backtrace(e)))?;
        out.insert(t.name, tensor);
    }
    Ok(out)
}

/// Checks the first pickle: `PROTO 2`, `LONG1` of the magic number, `STOP`.
fn read_magic(cursor: &mut Cursor<&[u8]>) -> std::result::Result<(), String> {
    let bytes = *cursor.get_ref();
    let not_legacy = || "not a legacy PyTorch checkpoint (no magic number)".to_string();
    let mut pos = 0;
    if bytes.first() == Some(&0x80) {
        pos = 2;
    }
    if bytes.get(pos) != Some(&0x8a) {
        return Err(not_legacy());
    }
    let n = *bytes.get(pos + 1).ok_or_else(not_legacy)? as usize;
    let digits = bytes.get(pos + 2..pos + 2 + n).ok_or_else(not_legacy)?;
    if n > 16 || bytes.get(pos + 2 + n) != Some(&b'.') {
        return Err(not_legacy());
    }
    let value = digits
        .iter()
        .rev()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    if value != MAGIC_NUMBER {
        return Err(not_legacy());
    }
    cursor.set_position((pos + 3 + n) as u64);
    Ok(())
}

fn read_pickle(cursor: &mut Cursor<&[u8]>, what: &str) -> std::result::Result<Object, String> {
    let start = cursor.position();
    let mut stack = Stack::empty();
    stack
        .read_loop(cursor)
        .and_then(|()| stack.finalize())
        .map_err(|e| {
            let e = without_backtrace(e);
            format!("cannot read the {what} pickle at byte {start} (truncated or corrupt?): {e}")
        })
}

/// The tensors of a state dict (an `OrderedDict`, possibly inside a
/// `{"state_dict": ..}` checkpoint). Entries that are not tensors, such as
/// `_metadata`, are skipped.
fn tensor_records(state: Object) -> std::result::Result<Vec<TensorRecord>, String> {
    let entries = match state {
        Object::Dict(entries) => entries,
        Object::Build { callable, .. } => match *callable {
            Object::Dict(entries) => entries,
            other => return Err(format!("expected a state dict, got {other:?}")),
        },
        other => return Err(format!("expected a state dict, got {other:?}")),
    };
    let mut records = Vec::new();
    for (key, value) in entries {
        let Ok(name) = key.unicode() else { continue };
        if name == "state_dict" {
            return tensor_records(value);
        }
        if let Some(record) = tensor_record(&name, value)? {
            records.push(record);
        }
    }
    if records.is_empty() {
        return Err("the state dict holds no tensors".to_string());
    }
    Ok(records)
}

/// `Some` for a `_rebuild_tensor_v2` (or `_rebuild_parameter` of one) call.
fn tensor_record(name: &str, value: Object) -> std::result::Result<Option<TensorRecord>, String> {
    let bad = |what: &str, o: &Object| format!("tensor '{name}': bad {what}: {o:?}");
    let Object::Reduce { callable, args } = value else {
        return Ok(None);
    };
    let (callable, args) = match (*callable, *args) {
        (
            Object::Class {
                module_name,
                class_name,
            },
            Object::Tuple(mut inner),
        ) if module_name == "torch._utils" && class_name == "_rebuild_parameter" => {
            match inner.drain(..).next() {
                Some(Object::Reduce { callable, args }) => (*callable, *args),
                _ => return Ok(None),
            }
        }
        (callable, args) => (callable, args),
    };
    match &callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let Object::Tuple(args) = args else {
        return Err(bad("arguments", &args));
    };
    let [storage, offset, size, stride, ..] = args.as_slice() else {
        return Err(format!("tensor '{name}': too few arguments"));
    };
    let Object::PersistentLoad(pid) = storage else {
        return Err(bad("storage", storage));
    };
    let Object::Tuple(pid) = pid.as_ref() else {
        return Err(bad("storage id", pid));
    };
    let [kind, class, key, _location, _numel, view, ..] = pid.as_slice() else {
        return Err(bad("storage id", &Object::Tuple(pid.clone())));
    };
    if kind != &Object::Unicode("storage".into()) {
        return Err(bad("storage id", kind));
    }
    if view != &Object::None {
        return Err(format!("tensor '{name}': storage views are not supported"));
    }
    let Object::Class { class_name, .. } = class else {
        return Err(bad("storage type", class));
    };
    let dtype = match class_name.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        other => return Err(format!("tensor '{name}': unsupported storage type {other}")),
    };
    let Object::Unicode(key) = key else {
        return Err(bad("storage key", key));
    };
    let offset = offset
        .clone()
        .int_or_long()
        .ok()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| bad("storage offset", offset))?;
    let shape = Vec::<usize>::try_from(size.clone()).map_err(|o| bad("size", &o))?;
    let stride = Vec::<usize>::try_from(stride.clone()).map_err(|o| bad("stride", &o))?;
    if shape.len() != stride.len() {
        return Err(format!(
            "tensor '{name}': size {shape:?} and stride {stride:?} differ in rank"
        ));
    }
    Ok(Some(TensorRecord {
        name: name.to_string(),
        storage_key: key.clone(),
        dtype,
        offset,
        shape,
        stride,
    }))
}

/// Checks that a tensor's view lies inside its storage (once the storage's
/// element count is known) and agrees with its type.
fn check_view_bounds(
    t: &TensorRecord,
    storage: Option<&StorageRecord>,
) -> std::result::Result<(), String> {
    let Some(storage) = storage else {
        return Ok(());
    };
    if storage.dtype != t.dtype {
        return Err(format!(
            "tensor '{}' reads storage {} as {:?}, tensor '{}' as {:?}",
            t.name, t.storage_key, t.dtype, storage.first_user, storage.dtype
        ));
    }
    if storage.numel == 0 || t.shape.contains(&0) {
        return Ok(());
    }
    let last: usize = t.offset
        + t.shape
            .iter()
            .zip(&t.stride)
            .map(|(size, stride)| (size - 1) * stride)
            .sum::<usize>();
    if last >= storage.numel {
        return Err(format!(
            "tensor '{}' of size {:?} (stride {:?}, offset {}) reaches past its storage of {} elements",
            t.name, t.shape, t.stride, t.offset, storage.numel
        ));
    }
    Ok(())
}

/// The tensor's elements in row-major order, as bytes.
fn gather(raw: &[u8], t: &TensorRecord, elem: usize) -> Vec<u8> {
    let numel: usize = t.shape.iter().product();
    let mut contiguous_stride = vec![1usize; t.shape.len()];
    for d in (0..t.shape.len().saturating_sub(1)).rev() {
        contiguous_stride[d] = contiguous_stride[d + 1] * t.shape[d + 1];
    }
    let is_contiguous = t
        .shape
        .iter()
        .zip(t.stride.iter().zip(&contiguous_stride))
        .all(|(&size, (s, c))| size <= 1 || s == c);
    if is_contiguous {
        return raw[t.offset * elem..(t.offset + numel) * elem].to_vec();
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let src = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&raw[src * elem..(src + 1) * elem]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written legacy file: one 2×3 tensor stored transposed
    /// (stride (1, 2)), as the MTCNN files store theirs.
    fn tiny_file(truncate_data_by: usize) -> Vec<u8> {
        let mut f = Vec::new();
        // Magic number: PROTO 2, LONG1 10 bytes, STOP.
        f.extend_from_slice(&[0x80, 0x02, 0x8a, 0x0a]);
        f.extend_from_slice(&MAGIC_NUMBER.to_le_bytes()[..10]);
        f.push(b'.');
        // Protocol version: BININT2 1001.
        f.extend_from_slice(&[0x80, 0x02, b'M', 0xe9, 0x03, b'.']);
        // System info: an empty dict.
        f.extend_from_slice(&[0x80, 0x02, b'}', b'.']);
        // State dict: {"w": _rebuild_tensor_v2(pid, 0, (2, 3), (1, 2), False, ())}.
        let unicode = |f: &mut Vec<u8>, s: &str| {
            f.push(b'X');
            f.extend_from_slice(&(s.len() as u32).to_le_bytes());
            f.extend_from_slice(s.as_bytes());
        };
        f.extend_from_slice(&[0x80, 0x02, b'}', b'(']);
        unicode(&mut f, "w");
        f.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        f.push(b'(');
        unicode(&mut f, "storage");
        f.extend_from_slice(b"ctorch\nFloatStorage\n");
        unicode(&mut f, "k0");
        unicode(&mut f, "cpu");
        f.extend_from_slice(&[b'K', 6, b'N', b't', b'Q']);
        f.extend_from_slice(&[b'K', 0, b'K', 2, b'K', 3, 0x86, b'K', 1, b'K', 2, 0x86]);
        f.extend_from_slice(&[0x89, b')', b't', b'R', b'u', b'.']);
        // Storage keys: ["k0"].
        f.extend_from_slice(&[0x80, 0x02, b']', b'(']);
        unicode(&mut f, "k0");
        f.extend_from_slice(b"e.");
        // Storage k0: 6 floats, column-major for the 2×3 view.
        f.extend_from_slice(&6u64.to_le_bytes());
        for v in [0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.truncate(f.len() - truncate_data_by);
        f
    }

    #[test]
    fn reads_a_strided_tensor() {
        let tensors = parse(&tiny_file(0), &Device::Cpu).unwrap();
        let w = tensors["w"].to_vec2::<f32>().unwrap();
        assert_eq!(w, vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
    }

    #[test]
    fn truncated_data_names_the_tensor() {
        let err = parse(&tiny_file(4), &Device::Cpu).unwrap_err();
        assert!(err.contains("truncated") && err.contains("'w'"), "{err}");
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let file = tiny_file(0);
        let err = parse(&file[..60], &Device::Cpu).unwrap_err();
        assert!(err.contains("pickle"), "{err}");
    }

    #[test]
    fn rejects_other_files() {
        let err = parse(b"PK\x03\x04rest", &Device::Cpu).unwrap_err();
        assert!(err.contains("zip-format"), "{err}");
        let err = parse(b"\x80\x02}q\x00.", &Device::Cpu).unwrap_err();
        assert!(err.contains("no magic number"), "{err}");
    }
}

// safetensors files: header parsing with full validation, read-only mmap access to tensor
// bytes, and a streaming writer. Format: u64 LE header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data buffer; offsets are relative to the buffer, which the tensors must cover exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace moekit::io {

namespace fs = std::filesystem;

// The safetensors crate refuses headers larger than this; so do we.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
    std::string name;
    core::DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets relative to the data buffer
    uint64_t end = 0;

    uint64_t n_elements() const;
    uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
    uint64_t header_len = 0;                       // the N above
    std::vector<TensorInfo> tensors;               // sorted by begin offset
    std::map<std::string, std::string> metadata;   // "__metadata__"
    uint64_t data_offset() const { return 8 + header_len; }
};

// Validates everything the format allows to be wrong: truncation, header length beyond the
// file or over kMaxHeaderBytes, invalid JSON (incl. NUL bytes, duplicate keys, nesting deeper
// than a header ever is), entries missing dtype/shape/data_offsets or of the wrong JSON type,
// unknown dtype, negative or non-integer dims, shape x dtype != byte range (or overflowing),
// begin > end, offsets outside the buffer, overlaps, gaps and trailing bytes, `__metadata__`
// not a string -> string map (null is read as absent, as the reference crate does). Every
// failure is a moekit::Error("safetensors", "<source>: <cause>"). Never reads outside
// [data, data + file_size). `data` must hold the whole file (file_size bytes).
SafetensorsHeader parse_safetensors(const std::byte* data, uint64_t file_size, const std::string& source);

// Read-only memory map of a whole file (MAP_PRIVATE). An empty file maps nothing (data() is
// nullptr). Missing/unreadable paths and directories throw moekit::Error("io", ...).
class MappedFile {
public:
    explicit MappedFile(const fs::path& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const std::byte* data() const { return data_; }
    uint64_t size() const { return size_; }
    const fs::path& path() const { return path_; }
    // Drops this process's page-table mappings of the whole pages inside [begin, end) (file
    // offsets; rounded inwards to page boundaries, so bytes outside the range are never
    // affected) with madvise(MADV_DONTNEED). The mapping is read-only and MAP_PRIVATE and is
    // never written, so no private copy can be lost: a later access simply faults the page back
    // in from the page cache / file with the same contents. Only the resident set shrinks; the
    // kernel's page cache is untouched. A no-op for ranges smaller than a page. Never throws.
    void release(uint64_t begin, uint64_t end) const noexcept;

private:
    fs::path path_;
    const std::byte* data_ = nullptr;
    uint64_t size_ = 0;
};

// One .safetensors file: parsed header plus mapped bytes. Opening reads only the header.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const fs::path& path);
    const fs::path& path() const { return file_->path(); }
    uint64_t file_size() const { return file_->size(); }
    const SafetensorsHeader& header() const { return header_; }
    const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
    const TensorInfo* find(std::string_view name) const;  // nullptr when absent
    std::span<const std::byte> bytes(const TensorInfo& info) const;
    // Converts the tensor to fp32 into dst (n_elements floats).
    void read_f32(const TensorInfo& info, float* dst) const;
    // Hints that the tensor's mapped bytes are not needed for now (MappedFile::release on the
    // page-aligned interior of its byte range; the first/last partial pages, which it may share
    // with neighbouring tensors, stay). Spans from bytes() remain valid and read the same data
    // (pages are faulted back in on access). Keeps the resident set of a streaming reader at the
    // bytes it is using instead of every page it ever touched.
    void release(const TensorInfo& info) const;
    // The same for bytes [byte_begin, byte_end) of the tensor (relative to its first byte,
    // clamped to the tensor): e.g. one row block of a large matrix.
    void release(const TensorInfo& info, uint64_t byte_begin, uint64_t byte_end) const;
    // The same for bytes [begin, end) of the data buffer (offsets as in TensorInfo, clamped to the
    // buffer): e.g. the union of several adjacent tensors, so that the pages they share go too.
    void release_data(uint64_t begin, uint64_t end) const;

private:
    std::shared_ptr<MappedFile> file_;
    SafetensorsHeader header_;
    std::map<std::string, std::size_t, std::less<>> index_;
};

// A tensor to be written: its bytes come from a callback so large outputs stream.
struct TensorSource {
    std::string name;
    core::DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;                                   // must equal n_elements * dtype size
    std::function<void(std::byte* dst)> fill;              // writes exactly nbytes
};

// A float tensor (F32, BF16 or F16) whose fp32 values, row-major, come from `values` when the
// writer reaches it (so a command computes merged or reconstructed weights one tensor at a time).
// The fill throws InternalError if `values` returns the wrong number of elements.
TensorSource f32_tensor_source(std::string name, core::DType dtype, std::vector<int64_t> shape,
                               std::function<std::vector<float>()> values);

// Writes one safetensors file: the header is computed from the sources up front (tensors in
// the given order, offsets contiguous, `__metadata__` first and omitted when empty, padded with
// spaces to a multiple of 8 bytes), then each tensor's bytes are streamed in the given order
// through one reusable buffer (small tensors batched, so write() calls are large). Throws
// moekit::Error naming the path and tensor for nbytes != shape x dtype size, duplicate or
// reserved names; on any failure (including a throwing fill) the partial file is removed.
// Does not fsync. Metadata defaults to {"format": "pt"}.
void write_safetensors(const fs::path& path, const std::vector<TensorSource>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace moekit::io

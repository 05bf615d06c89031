// safetensors: validating header parser, read-only mmap, streaming writer.
//
// The parser treats every byte of the file as hostile: it checks lengths before it allocates
// or reads, parses the header with nlohmann::json (a parser callback rejects duplicate keys and
// absurd nesting while parsing), and checks that the tensors tile the data buffer exactly, as
// the reference implementation (the Rust `safetensors` crate) does.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace moekit::io {
namespace {

using json = nlohmann::json;

// A valid header nests at most 3 deep (object -> entry -> shape array).
constexpr int kMaxJsonDepth = 16;

[[noreturn]] void fail(const std::string& source, const std::string& message) {
    throw Error("safetensors", source + ": " + message);
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

std::string range_text(uint64_t begin, uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

std::string valid_dtype_list() {
    std::string text;
    for (int i = 0; i <= int(core::DType::F8_E5M2); ++i) {
        if (i) text += ", ";
        text += core::dtype_name(core::DType(i));
    }
    return text;
}

// Short, printable rendering of a JSON value for error messages.
std::string brief(const json& value) {
    std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

// Reads a non-negative integer that fits in T; false for anything else.
bool as_unsigned(const json& value, uint64_t& out) {
    if (value.is_number_unsigned()) {
        out = value.get<uint64_t>();
        return true;
    }
    if (value.is_number_integer()) {
        const int64_t v = value.get<int64_t>();
        if (v < 0) return false;
        out = uint64_t(v);
        return true;
    }
    return false;
}

TensorInfo parse_entry(const std::string& name, const json& entry, const std::string& source) {
    const std::string what = "tensor '" + name + "'";
    if (!entry.is_object()) fail(source, what + ": entry must be a JSON object, got " + entry.type_name());
    for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(key)) fail(source, what + ": missing '" + key + "'");

    TensorInfo info;
    info.name = name;

    const json& dtype = entry["dtype"];
    if (!dtype.is_string()) fail(source, what + ": 'dtype' must be a string, got " + dtype.type_name());
    const auto parsed = core::parse_dtype(dtype.get_ref<const std::string&>());
    if (!parsed)
        fail(source, what + ": unknown dtype " + brief(dtype) + " (valid: " + valid_dtype_list() + ")");
    info.dtype = *parsed;

    const json& shape = entry["shape"];
    if (!shape.is_array()) fail(source, what + ": 'shape' must be an array, got " + shape.type_name());
    info.shape.reserve(shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) {
        uint64_t dim = 0;
        if (!as_unsigned(shape[i], dim) || dim > uint64_t(INT64_MAX))
            fail(source, what + ": shape dimension " + std::to_string(i) + " is " + brief(shape[i]) +
                             "; dimensions must be non-negative integers");
        info.shape.push_back(int64_t(dim));
    }

    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array())
        fail(source, what + ": 'data_offsets' must be an array [begin, end], got " + offsets.type_name());
    if (offsets.size() != 2 || !as_unsigned(offsets[0], info.begin) || !as_unsigned(offsets[1], info.end))
        fail(source, what + ": 'data_offsets' must be [begin, end] with non-negative integers, got " +
                         brief(offsets));
    if (info.begin > info.end)
        fail(source, what + ": data_offsets " + range_text(info.begin, info.end) + " have begin > end");

    uint64_t count = 1;
    for (int64_t dim : info.shape)
        if (__builtin_mul_overflow(count, uint64_t(dim), &count))
            fail(source, what + ": shape " + shape_text(info.shape) + " has more elements than fit in 64 bits");
    uint64_t needed = 0;
    if (__builtin_mul_overflow(count, uint64_t(core::dtype_size(info.dtype)), &needed))
        fail(source, what + ": shape " + shape_text(info.shape) + " with dtype " +
                         std::string(core::dtype_name(info.dtype)) + " needs more bytes than fit in 64 bits");
    if (needed != info.end - info.begin)
        fail(source, what + ": shape " + shape_text(info.shape) + " with dtype " +
                         std::string(core::dtype_name(info.dtype)) + " needs " + std::to_string(needed) +
                         " bytes but data_offsets " + range_text(info.begin, info.end) + " span " +
                         std::to_string(info.end - info.begin));
    return info;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& source) {
    std::map<std::string, std::string> metadata;
    if (value.is_null()) return metadata;  // the reference implementation reads null as absent
    if (!value.is_object())
        fail(source, "'__metadata__' must be an object mapping strings to strings, got " +
                         std::string(value.type_name()));
    for (const auto& [key, item] : value.items()) {
        if (!item.is_string())
            fail(source, "'__metadata__' must map strings to strings, but key '" + key + "' has a " +
                             item.type_name() + " value");
        metadata.emplace(key, item.get<std::string>());
    }
    return metadata;
}

}  // namespace

uint64_t TensorInfo::n_elements() const {
    uint64_t count = 1;
    for (int64_t dim : shape) count *= uint64_t(dim);
    return count;
}

SafetensorsHeader parse_safetensors(const std::byte* data, uint64_t file_size, const std::string& source) {
    if (file_size == 0) fail(source, "file is empty (not a safetensors file)");
    if (file_size < 8)
        fail(source, "file is " + std::to_string(file_size) +
                         " bytes, too short to hold the 8-byte header length (truncated?)");
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);  // little-endian host (checked by CMake)
    if (header_len > kMaxHeaderBytes)
        fail(source, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                         std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
    if (header_len > file_size - 8)
        fail(source, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                         std::to_string(file_size) + " bytes; truncated?)");
    const char* text = reinterpret_cast<const char*>(data + 8);
    if (header_len == 0 || text[0] != '{')
        fail(source, "header does not start with '{' (not a safetensors file?)");

    // nlohmann's lexer stops at a NUL as if the input ended there; valid JSON never holds one.
    if (const void* nul = std::memchr(text, 0, header_len))
        fail(source, "header contains a NUL byte at offset " +
                         std::to_string(static_cast<const char*>(nul) - text) + " (not valid JSON)");

    // Duplicate keys: nlohmann keeps the last one silently, so track keys per open object.
    std::vector<std::set<std::string>> open_objects;
    json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                if (depth >= kMaxJsonDepth)
                    fail(source, "header JSON is nested " + std::to_string(depth) +
                                     " levels deep; a safetensors header never is");
                if (event == json::parse_event_t::object_start) open_objects.emplace_back();
                break;
            case json::parse_event_t::object_end:
                if (!open_objects.empty()) open_objects.pop_back();
                break;
            case json::parse_event_t::key:
                if (!open_objects.empty() && parsed.is_string() &&
                    !open_objects.back().insert(parsed.get<std::string>()).second) {
                    if (depth == 1)
                        fail(source, "duplicate tensor name '" + parsed.get<std::string>() + "' in the header");
                    fail(source, "duplicate key '" + parsed.get<std::string>() + "' in the header");
                }
                break;
            default: break;
        }
        return true;
    };

    json header;
    try {
        header = json::parse(text, text + header_len, callback, true, false);
    } catch (const json::parse_error& e) {
        fail(source, "header is not valid JSON (at byte " + std::to_string(e.byte) + " of " +
                         std::to_string(header_len) + "): " + e.what());
    } catch (const json::exception& e) {  // e.g. out_of_range.406: a number like 1e400
        fail(source, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(source, std::string("header must be a JSON object, got ") + header.type_name());

    SafetensorsHeader result;
    result.header_len = header_len;
    result.tensors.reserve(header.size());
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            result.metadata = parse_metadata(entry, source);
            continue;
        }
        result.tensors.push_back(parse_entry(name, entry, source));
    }

    // The tensors must tile the data buffer exactly: sorted by offset, each begins where the
    // previous ended, the last ends at the end of the file.
    const uint64_t buffer_size = file_size - 8 - header_len;
    std::sort(result.tensors.begin(), result.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    const TensorInfo* previous = nullptr;
    for (const TensorInfo& info : result.tensors) {
        if (info.end > buffer_size)
            fail(source, "tensor '" + info.name + "': data_offsets " + range_text(info.begin, info.end) +
                             " end beyond the data buffer (" + std::to_string(buffer_size) + " bytes)");
        if (info.begin < covered)
            fail(source, "tensors '" + previous->name + "' " + range_text(previous->begin, previous->end) +
                             " and '" + info.name + "' " + range_text(info.begin, info.end) + " overlap");
        if (info.begin > covered)
            fail(source, "gap in the data buffer: bytes " + range_text(covered, info.begin) +
                             " are not covered by any tensor (before tensor '" + info.name + "')");
        covered = info.end;
        previous = &info;
    }
    if (covered != buffer_size)
        fail(source, "trailing bytes: bytes " + range_text(covered, buffer_size) +
                         " of the data buffer are not covered by any tensor");
    return result;
}

// MappedFile -----------------------------------------------------------------------------------

MappedFile::MappedFile(const fs::path& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        throw Error("io", path.string() + ": cannot open: " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error("io", path.string() + ": cannot stat: " + std::strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw Error("io", path.string() + ": is a directory, expected a file");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error("io", path.string() + ": not a regular file");
    }
    size_ = uint64_t(st.st_size);
    if (size_ > 0) {
        void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw Error("io", path.string() + ": cannot map " + std::to_string(size_) +
                                  " bytes: " + std::strerror(err));
        }
        data_ = static_cast<const std::byte*>(addr);
    }
    ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::release(uint64_t begin, uint64_t end) const noexcept {
    if (!data_) return;
    end = std::min(end, size_);
    static const uint64_t page = [] {
        const long p = ::sysconf(_SC_PAGESIZE);
        return p > 0 ? uint64_t(p) : uint64_t(4096);
    }();
    // data_ is page-aligned (mmap at offset 0), so file offsets align the same way.
    const uint64_t first = (begin + page - 1) / page * page;
    const uint64_t last = end / page * page;
    if (first >= last) return;
    ::madvise(const_cast<std::byte*>(data_) + first, last - first, MADV_DONTNEED);  // advisory: errors ignored
}

// SafetensorsFile ------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const fs::path& path)
    : file_(std::make_shared<MappedFile>(path)),
      header_(parse_safetensors(file_->data(), file_->size(), path.string())) {
    for (std::size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& info) const {
    if (info.end < info.begin || header_.data_offset() + info.end > file_->size())
        throw InternalError("safetensors", "tensor '" + info.name + "' does not belong to " + path().string());
    return {file_->data() + header_.data_offset() + info.begin, info.nbytes()};
}

void SafetensorsFile::release(const TensorInfo& info) const { release(info, 0, info.nbytes()); }

void SafetensorsFile::release(const TensorInfo& info, uint64_t byte_begin, uint64_t byte_end) const {
    const auto span = bytes(info);  // validates that info belongs to this file
    (void)span;
    byte_end = std::min(byte_end, info.nbytes());
    if (byte_begin >= byte_end) return;
    const uint64_t base = header_.data_offset() + info.begin;
    file_->release(base + byte_begin, base + byte_end);
}

void SafetensorsFile::release_data(uint64_t begin, uint64_t end) const {
    const uint64_t base = header_.data_offset();
    const uint64_t size = file_->size() - std::min(base, file_->size());
    end = std::min(end, size);
    if (begin >= end) return;
    file_->release(base + begin, base + end);
}

void SafetensorsFile::read_f32(const TensorInfo& info, float* dst) const {
    const auto src = bytes(info);
    const std::size_t n = info.n_elements();
    const std::size_t elem = core::dtype_size(info.dtype);
    if (n == 0) return;  // dst may be null for an empty tensor
    constexpr std::size_t kChunk = std::size_t(1) << 18;  // elements per task
    if (n < 2 * kChunk) {
        core::convert_to_f32(info.dtype, src.data(), n, dst);
        return;
    }
    const std::ptrdiff_t n_chunks = std::ptrdiff_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t c = 0; c < n_chunks; ++c) {
        const std::size_t first = std::size_t(c) * kChunk;
        const std::size_t count = std::min(kChunk, n - first);
        core::convert_to_f32(info.dtype, src.data() + first * elem, count, dst + first);
    }
}

// Writer ---------------------------------------------------------------------------------------

namespace {

class OutFile {
public:
    explicit OutFile(const fs::path& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            const int err = errno;
            throw Error("safetensors", path.string() + ": cannot create: " + std::strerror(err));
        }
    }
    ~OutFile() {
        if (fd_ >= 0) {
            ::close(fd_);
            ::unlink(path_.c_str());  // not committed: remove the partial file
        }
    }
    void write(const std::byte* data, std::size_t size) {
        constexpr std::size_t kMaxWrite = std::size_t(1) << 30;
        while (size > 0) {
            const ssize_t n = ::write(fd_, data, std::min(size, kMaxWrite));
            if (n < 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                throw Error("safetensors", path_.string() + ": write failed: " + std::strerror(err));
            }
            data += n;
            size -= std::size_t(n);
        }
    }
    void commit() {
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) {
            const int err = errno;
            ::unlink(path_.c_str());
            throw Error("safetensors", path_.string() + ": close failed: " + std::strerror(err));
        }
    }

private:
    fs::path path_;
    int fd_ = -1;
};

}  // namespace

void write_safetensors(const fs::path& path, const std::vector<TensorSource>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    const std::string where = path.string();
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;

    uint64_t offset = 0;
    uint64_t max_nbytes = 0;
    std::set<std::string_view> names;
    for (const TensorSource& t : tensors) {
        const std::string what = where + ": tensor '" + t.name + "'";
        if (t.name.empty()) throw Error("safetensors", where + ": a tensor has an empty name");
        if (t.name == "__metadata__") throw Error("safetensors", what + ": name is reserved");
        if (!names.insert(t.name).second) throw Error("safetensors", what + ": name given twice");
        if (!t.fill) throw Error("safetensors", what + ": no data source");
        uint64_t count = 1;
        bool overflow = false;
        for (int64_t dim : t.shape) {
            if (dim < 0) throw Error("safetensors", what + ": negative dimension in shape " + shape_text(t.shape));
            overflow |= __builtin_mul_overflow(count, uint64_t(dim), &count);
        }
        uint64_t needed = 0;
        overflow |= __builtin_mul_overflow(count, uint64_t(core::dtype_size(t.dtype)), &needed);
        if (overflow || needed != t.nbytes)
            throw Error("safetensors", what + ": nbytes " + std::to_string(t.nbytes) + " does not match shape " +
                                           shape_text(t.shape) + " x " + std::string(core::dtype_name(t.dtype)) +
                                           (overflow ? " (overflows)" : " = " + std::to_string(needed) + " bytes"));
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = std::string(core::dtype_name(t.dtype));
        entry["shape"] = t.shape;
        entry["data_offsets"] = {offset, offset + t.nbytes};
        header[t.name] = std::move(entry);
        offset += t.nbytes;
        max_nbytes = std::max(max_nbytes, t.nbytes);
    }
    std::string text;
    try {
        text = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
    } catch (const nlohmann::ordered_json::type_error& e) {
        throw Error("safetensors", where + ": a tensor name or metadata string is not valid UTF-8");
    }
    text.append((8 - text.size() % 8) % 8, ' ');  // as the reference writer pads
    if (text.size() > kMaxHeaderBytes)
        throw Error("safetensors", where + ": header would be " + std::to_string(text.size()) +
                                       " bytes, over the format's limit of " + std::to_string(kMaxHeaderBytes));

    OutFile out(path);
    const uint64_t header_len = text.size();
    std::byte len_bytes[8];
    std::memcpy(len_bytes, &header_len, 8);
    out.write(len_bytes, 8);
    out.write(reinterpret_cast<const std::byte*>(text.data()), text.size());

    // Small tensors are batched into one buffer so that every write() is large; a tensor larger
    // than the batch size gets the buffer to itself.
    constexpr uint64_t kBatchBytes = uint64_t(64) << 20;
    const uint64_t capacity = std::max(max_nbytes, std::min(offset, kBatchBytes));
    std::unique_ptr<std::byte[]> buffer(new std::byte[std::max<uint64_t>(capacity, 1)]);
    uint64_t used = 0;
    for (const TensorSource& t : tensors) {
        if (used > 0 && used + t.nbytes > capacity) {
            out.write(buffer.get(), used);
            used = 0;
        }
        t.fill(buffer.get() + used);
        used += t.nbytes;
    }
    if (used > 0) out.write(buffer.get(), used);
    out.commit();
}

TensorSource f32_tensor_source(std::string name, core::DType dtype, std::vector<int64_t> shape,
                               std::function<std::vector<float>()> values) {
    TensorSource src;
    src.name = std::move(name);
    src.dtype = dtype;
    src.shape = std::move(shape);
    uint64_t n = 1;
    for (int64_t d : src.shape) n *= static_cast<uint64_t>(d);
    src.nbytes = n * core::dtype_size(dtype);
    src.fill = [dtype, n, tensor = src.name, values = std::move(values)](std::byte* dst) {
        const std::vector<float> v = values();
        if (v.size() != n) throw InternalError("safetensors", "tensor '" + tensor + "': values have the wrong size");
        core::convert_from_f32(dtype, v.data(), v.size(), dst);
    };
    return src;
}

}  // namespace moekit::io

// GGUF v3 writer and header reader (format in gguf.h).
#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <fstream>
#include <set>

#include "core/error.h"

namespace moekit::io {
namespace fs = std::filesystem;

namespace {

using Item = std::variant<uint64_t, int64_t, double, bool, std::string>;

class Buffer {
public:
    std::vector<std::byte> bytes;
    template <typename T>
    void pod(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        pod<uint64_t>(s.size());
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        bytes.insert(bytes.end(), p, p + s.size());
    }
    void pad(uint64_t alignment) {
        while (bytes.size() % alignment != 0) bytes.push_back(std::byte{0});
    }
};

void put_item(Buffer& b, GgufType type, const Item& item) {
    switch (type) {
        case GgufType::uint8: b.pod<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(item))); return;
        case GgufType::int8: b.pod<int8_t>(static_cast<int8_t>(std::get<int64_t>(item))); return;
        case GgufType::uint16: b.pod<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(item))); return;
        case GgufType::int16: b.pod<int16_t>(static_cast<int16_t>(std::get<int64_t>(item))); return;
        case GgufType::uint32: b.pod<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(item))); return;
        case GgufType::int32: b.pod<int32_t>(static_cast<int32_t>(std::get<int64_t>(item))); return;
        case GgufType::uint64: b.pod<uint64_t>(std::get<uint64_t>(item)); return;
        case GgufType::int64: b.pod<int64_t>(std::get<int64_t>(item)); return;
        case GgufType::float32: b.pod<float>(static_cast<float>(std::get<double>(item))); return;
        case GgufType::float64: b.pod<double>(std::get<double>(item)); return;
        case GgufType::boolean: b.pod<uint8_t>(std::get<bool>(item) ? 1 : 0); return;
        case GgufType::string: b.str(std::get<std::string>(item)); return;
        case GgufType::array: break;
    }
    throw InternalError("gguf", "nested arrays are not written");
}

void put_value(Buffer& b, const GgufValue& v) {
    b.pod<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == GgufType::array) {
        b.pod<uint32_t>(static_cast<uint32_t>(v.array_type));
        b.pod<uint64_t>(v.items.size());
        for (const auto& item : v.items) put_item(b, v.array_type, item);
    } else {
        put_item(b, v.type, v.scalar);
    }
}

}  // namespace

GgufValue GgufValue::u32(uint32_t v) { GgufValue r; r.type = GgufType::uint32; r.scalar = uint64_t{v}; return r; }
GgufValue GgufValue::i32(int32_t v) { GgufValue r; r.type = GgufType::int32; r.scalar = int64_t{v}; return r; }
GgufValue GgufValue::u64(uint64_t v) { GgufValue r; r.type = GgufType::uint64; r.scalar = v; return r; }
GgufValue GgufValue::f32(float v) { GgufValue r; r.type = GgufType::float32; r.scalar = double{v}; return r; }
GgufValue GgufValue::boolean(bool v) { GgufValue r; r.type = GgufType::boolean; r.scalar = v; return r; }
GgufValue GgufValue::str(std::string v) { GgufValue r; r.type = GgufType::string; r.scalar = std::move(v); return r; }
GgufValue GgufValue::str_array(const std::vector<std::string>& v) {
    GgufValue r; r.type = GgufType::array; r.array_type = GgufType::string;
    for (const auto& s : v) r.items.emplace_back(s);
    return r;
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
    GgufValue r; r.type = GgufType::array; r.array_type = GgufType::int32;
    for (auto x : v) r.items.emplace_back(int64_t{x});
    return r;
}
GgufValue GgufValue::f32_array(const std::vector<float>& v) {
    GgufValue r; r.type = GgufType::array; r.array_type = GgufType::float32;
    for (auto x : v) r.items.emplace_back(double{x});
    return r;
}

void GgufWriter::set(const std::string& key, GgufValue value) {
    for (auto& [k, v] : kv_) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    kv_.emplace_back(key, std::move(value));
}

bool GgufWriter::has(const std::string& key) const {
    for (const auto& kv : kv_)
        if (kv.first == key) return true;
    return false;
}

void GgufWriter::add_tensor(GgufTensor tensor) {
    for (const auto& t : tensors_)
        if (t.name == tensor.name) throw Error("gguf", "two tensors named '" + tensor.name + "'");
    tensors_.push_back(std::move(tensor));
}

uint64_t GgufWriter::alignment() const {
    for (const auto& [k, v] : kv_)
        if (k == "general.alignment") return std::get<uint64_t>(v.scalar);
    return 32;
}

uint64_t GgufWriter::write(const fs::path& path, bool force) const {
    if (fs::exists(path) && !force)
        throw Error("gguf", path.string() + " exists (use --force to replace it)");
    if (fs::is_directory(path)) throw Error("gguf", path.string() + " is a directory");
    const uint64_t align = alignment();

    Buffer head;
    head.pod<uint32_t>(0x46554747u);  // "GGUF"
    head.pod<uint32_t>(3);
    head.pod<uint64_t>(tensors_.size());
    head.pod<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
        head.str(k);
        put_value(head, v);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        head.str(t.name);
        head.pod<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (auto n : t.ne) head.pod<uint64_t>(static_cast<uint64_t>(n));
        head.pod<uint32_t>(t.ggml_type);
        head.pod<uint64_t>(offset);
        offset += (t.nbytes + align - 1) / align * align;
    }
    head.pad(align);

    const uint64_t total = head.bytes.size() + offset;
    const fs::path tmp = path.string() + ".moekit-tmp-" + std::to_string(::getpid());
    // The tensors are filled straight into a shared mapping of the (preallocated) file: no
    // intermediate buffer and no copy through write(2), and a multi-threaded fill writes the
    // page cache in parallel. posix_fallocate reports a full disk as an error here instead of a
    // SIGBUS on some page later; the padding reads as zeros.
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) throw Error("gguf", "cannot create " + tmp.string() + ": " + std::strerror(errno));
    void* map = MAP_FAILED;
    try {
        if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(total)); e != 0)
            throw Error("gguf", "cannot allocate " + std::to_string(total) + " bytes for " + tmp.string() + ": " +
                                    std::strerror(e));
        map = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) throw Error("gguf", "cannot map " + tmp.string() + ": " + std::strerror(errno));
        auto* out = static_cast<std::byte*>(map);
        std::memcpy(out, head.bytes.data(), head.bytes.size());
        std::vector<std::byte*> dst;
        std::vector<std::pair<std::size_t, int64_t>> parts;  // (tensor, part) of the parted tensors
        uint64_t at = head.bytes.size();
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const GgufTensor& t = tensors_[i];
            dst.push_back(out + at);
            at += (t.nbytes + align - 1) / align * align;
            if (t.n_parts > 0)
                for (int64_t p = 0; p < t.n_parts; ++p) parts.emplace_back(i, p);
            else {
                t.fill(dst.back());
                if (t.done) t.done();
            }
        }
        std::vector<std::atomic<int64_t>> left(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) left[i] = tensors_[i].n_parts;
        std::exception_ptr error;
        std::mutex error_mutex;
        const auto n_items = static_cast<std::ptrdiff_t>(parts.size());
#pragma omp parallel for schedule(dynamic, 1)
        for (std::ptrdiff_t k = 0; k < n_items; ++k) {
            try {
                {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (error) continue;
                }
                const auto [i, p] = parts[static_cast<std::size_t>(k)];
                tensors_[i].fill_part(p, dst[i]);
                if (left[i].fetch_sub(1) == 1 && tensors_[i].done) tensors_[i].done();
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
        }
        if (error) std::rethrow_exception(error);
        ::munmap(map, total);
        map = MAP_FAILED;
        if (::fsync(fd) != 0) throw Error("gguf", "flushing " + tmp.string() + " failed: " + std::strerror(errno));
        ::close(fd);
        fs::rename(tmp, path);
    } catch (...) {
        if (map != MAP_FAILED) ::munmap(map, total);
        ::close(fd);
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
    return fs::file_size(path);
}

// ---- reader --------------------------------------------------------------------------------

namespace {

class Reader {
public:
    explicit Reader(const fs::path& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) throw Error("gguf", "cannot open " + path.string());
        size_ = fs::file_size(path);
    }
    template <typename T>
    T pod() {
        T v{};
        need(sizeof(T));
        in_.read(reinterpret_cast<char*>(&v), sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string str() {
        const auto n = pod<uint64_t>();
        need(n);
        std::string s(n, '\0');
        in_.read(s.data(), static_cast<std::streamsize>(n));
        pos_ += n;
        return s;
    }
    uint64_t pos() const { return pos_; }
    const fs::path& path() const { return path_; }

private:
    void need(uint64_t n) {
        if (n > size_ - pos_) throw Error("gguf", path_.string() + ": truncated at byte " + std::to_string(pos_));
    }
    fs::path path_;
    std::ifstream in_;
    uint64_t size_ = 0, pos_ = 0;
};

Item read_item(Reader& r, GgufType type) {
    switch (type) {
        case GgufType::uint8: return uint64_t{r.pod<uint8_t>()};
        case GgufType::int8: return int64_t{r.pod<int8_t>()};
        case GgufType::uint16: return uint64_t{r.pod<uint16_t>()};
        case GgufType::int16: return int64_t{r.pod<int16_t>()};
        case GgufType::uint32: return uint64_t{r.pod<uint32_t>()};
        case GgufType::int32: return int64_t{r.pod<int32_t>()};
        case GgufType::uint64: return r.pod<uint64_t>();
        case GgufType::int64: return r.pod<int64_t>();
        case GgufType::float32: return double{r.pod<float>()};
        case GgufType::float64: return r.pod<double>();
        case GgufType::boolean: return r.pod<uint8_t>() != 0;
        case GgufType::string: return r.str();
        case GgufType::array: break;
    }
    throw Error("gguf", r.path().string() + ": bad metadata value type " + std::to_string(static_cast<uint32_t>(type)));
}

}  // namespace

GgufFileInfo read_gguf_info(const fs::path& path) {
    Reader r(path);
    GgufFileInfo info;
    if (r.pod<uint32_t>() != 0x46554747u) throw Error("gguf", path.string() + ": not a GGUF file (bad magic)");
    info.version = r.pod<uint32_t>();
    if (info.version != 3) throw Error("gguf", path.string() + ": GGUF version " + std::to_string(info.version) + " (want 3)");
    const auto n_tensor = r.pod<uint64_t>();
    const auto n_kv = r.pod<uint64_t>();
    uint64_t align = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = r.str();
        GgufValue v;
        v.type = static_cast<GgufType>(r.pod<uint32_t>());
        if (v.type == GgufType::array) {
            v.array_type = static_cast<GgufType>(r.pod<uint32_t>());
            const auto n = r.pod<uint64_t>();
            for (uint64_t j = 0; j < n; ++j) v.items.push_back(read_item(r, v.array_type));
        } else {
            v.scalar = read_item(r, v.type);
        }
        if (key == "general.alignment" && v.type == GgufType::uint32) align = std::get<uint64_t>(v.scalar);
        info.kv.emplace_back(std::move(key), std::move(v));
    }
    for (uint64_t i = 0; i < n_tensor; ++i) {
        GgufTensorInfo t;
        t.name = r.str();
        const auto nd = r.pod<uint32_t>();
        if (nd > 4) throw Error("gguf", path.string() + ": tensor '" + t.name + "' has " + std::to_string(nd) + " dims");
        for (uint32_t d = 0; d < nd; ++d) t.ne.push_back(static_cast<int64_t>(r.pod<uint64_t>()));
        t.ggml_type = r.pod<uint32_t>();
        t.offset = r.pod<uint64_t>();
        info.tensors.push_back(std::move(t));
    }
    info.data_offset = (r.pos() + align - 1) / align * align;
    for (auto& t : info.tensors) t.offset += info.data_offset;
    return info;
}

}  // namespace moekit::io

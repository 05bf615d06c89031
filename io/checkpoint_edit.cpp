// The one checkpoint writer: validates a CheckpointEdit against its input, writes the result
// into a temporary sibling directory (copied tensors byte-for-byte from the mmap, new tensors
// from their fill callbacks), then renames it into place.
#include "io/checkpoint_edit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace moekit::io {
namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

[[noreturn]] void fail(const std::string& message) { throw Error("checkpoint", message); }

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_plain_file_name(const std::string& name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\0') == std::string::npos;
}

// True when `inner` is `outer` or lies below it (both canonical).
bool is_within(const fs::path& inner, const fs::path& outer) {
    auto i = inner.begin();
    for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
        if (i == inner.end() || *i != *o) return false;
    }
    return true;
}

// Files of the input directory that the writer regenerates or that hold (now stale) weights.
bool is_weight_or_generated(const std::string& name) {
    if (name == "config.json" || name == kIndexName) return true;
    for (const char* suffix : {".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".pth",
                               ".ckpt", ".h5", ".msgpack", ".gguf"})
        if (ends_with(name, suffix)) return true;
    return false;
}

void fsync_path(const fs::path& path, bool directory) {
    const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        fail(path.string() + ": cannot open for fsync: " + std::strerror(err));
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && !(directory && (err == EINVAL || err == EBADF)))
        fail(path.string() + ": fsync failed: " + std::strerror(err));
}

void write_text_file(const fs::path& path, const std::string& contents) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), std::streamsize(contents.size()));
    out.close();
    if (!out) fail(path.string() + ": cannot write");
}

// Removes the temporary directory unless the write completed.
class TempDirGuard {
public:
    explicit TempDirGuard(fs::path path) : path_(std::move(path)) {}
    ~TempDirGuard() {
        if (!path_.empty()) {
            std::error_code ec;
            fs::remove_all(path_, ec);
        }
    }
    TempDirGuard(const TempDirGuard&) = delete;
    TempDirGuard& operator=(const TempDirGuard&) = delete;
    void dismiss() { path_.clear(); }

private:
    fs::path path_;
};

// SIGINT / SIGTERM while writing: the handler only records the signal; the writer stops at the
// next tensor (or before the final rename) by throwing, the TempDirGuard removes the temporary
// directory, and then this guard (destroyed after it) restores the previous handlers and
// re-raises the signal, so the process still ends the way the signal asks (exit 130 for Ctrl-C).
// Signals the process ignores stay ignored.
// Without it an interrupted write would leave "<out>.moekit-tmp-<pid>" behind.
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void record_interrupt(int sig) { g_interrupted = sig; }

class InterruptGuard {
public:
    InterruptGuard() {
        g_interrupted = 0;
        struct sigaction action {};
        action.sa_handler = record_interrupt;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        // A signal the process ignores (SIGINT of a background job) stays ignored.
        sigaction(SIGINT, nullptr, &old_int_);
        sigaction(SIGTERM, nullptr, &old_term_);
        if (old_int_.sa_handler != SIG_IGN) sigaction(SIGINT, &action, nullptr);
        if (old_term_.sa_handler != SIG_IGN) sigaction(SIGTERM, &action, nullptr);
    }
    ~InterruptGuard() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
        if (const int sig = g_interrupted) {
            g_interrupted = 0;
            std::raise(sig);
        }
    }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;
    static void check() {
        if (g_interrupted) fail(std::string("interrupted by ") + (g_interrupted == SIGINT ? "SIGINT" : "SIGTERM") + " while writing");
    }

private:
    struct sigaction old_int_ {}, old_term_ {};
};

// One tensor of the output and where its bytes come from.
struct OutputTensor {
    std::string name;
    const Checkpoint::Entry* copy_from = nullptr;  // copied byte-for-byte
    const TensorSource* put = nullptr;             // or written from edit.put
    uint64_t nbytes() const { return copy_from ? copy_from->info->nbytes() : put->nbytes; }
};

void check_source(const TensorSource& t) {
    const std::string what = "put: tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__") fail("put: invalid tensor name '" + t.name + "'");
    if (!t.fill) fail(what + " has no fill callback");
    uint64_t count = 1;
    bool overflow = false;
    for (int64_t dim : t.shape) {
        if (dim < 0) fail(what + " has a negative dimension");
        overflow |= __builtin_mul_overflow(count, uint64_t(dim), &count);
    }
    uint64_t needed = 0;
    overflow |= __builtin_mul_overflow(count, uint64_t(core::dtype_size(t.dtype)), &needed);
    if (overflow || needed != t.nbytes)
        fail(what + ": nbytes " + std::to_string(t.nbytes) + " does not match its shape and dtype " +
             std::string(core::dtype_name(t.dtype)) + (overflow ? "" : " (" + std::to_string(needed) + " bytes)"));
}

// Validates the edit and lists the output tensors in natural name order.
std::vector<OutputTensor> plan_tensors(const Checkpoint& input, const CheckpointEdit& edit) {
    const std::string in = input.dir().string();
    for (const auto& name : edit.drop)
        if (!input.find(name)) fail("drop: the input " + in + " has no tensor named '" + name + "'");
    for (const auto& [from, to] : edit.rename) {
        if (!input.find(from)) fail("rename: the input " + in + " has no tensor named '" + from + "'");
        if (edit.drop.count(from)) fail("tensor '" + from + "' is both dropped and renamed");
        if (to.empty() || to == "__metadata__") fail("rename: invalid new name '" + to + "' for tensor '" + from + "'");
    }

    std::map<std::string, OutputTensor> out;
    std::map<std::string, std::string> origin;  // output name -> input name
    for (const auto& [name, entry] : input.tensors()) {
        if (edit.drop.count(name)) continue;
        const auto renamed = edit.rename.find(name);
        const std::string& final_name = renamed == edit.rename.end() ? name : renamed->second;
        const auto [it, inserted] = out.emplace(final_name, OutputTensor{final_name, &entry, nullptr});
        if (!inserted)
            fail("two output tensors would be named '" + final_name + "' (from input tensors '" +
                 origin[final_name] + "' and '" + name + "')");
        origin[final_name] = name;
    }
    std::set<std::string> put_names;
    for (const TensorSource& t : edit.put) {
        check_source(t);
        if (!put_names.insert(t.name).second) fail("put: tensor '" + t.name + "' is given twice");
        const auto it = out.find(t.name);
        if (it == out.end()) {
            out.emplace(t.name, OutputTensor{t.name, nullptr, &t});
        } else if (origin[t.name] == t.name) {
            it->second = OutputTensor{t.name, nullptr, &t};  // replaces the input tensor of that name
        } else {
            fail("put: tensor '" + t.name + "' collides with input tensor '" + origin[t.name] +
                 "' renamed to '" + t.name + "'");
        }
    }
    std::vector<OutputTensor> ordered;
    ordered.reserve(out.size());
    for (auto& [name, tensor] : out) ordered.push_back(tensor);
    std::sort(ordered.begin(), ordered.end(),
              [](const OutputTensor& a, const OutputTensor& b) { return natural_less(a.name, b.name); });
    return ordered;
}

std::string shard_name(std::size_t i, std::size_t n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    return buf;
}

}  // namespace

bool natural_less(const std::string& a, const std::string& b) {
    auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (is_digit(a[i]) && is_digit(b[j])) {
            std::size_t ie = i, je = j;
            while (ie < a.size() && is_digit(a[ie])) ++ie;
            while (je < b.size() && is_digit(b[je])) ++je;
            std::size_t iz = i, jz = j;  // skip leading zeros, then compare by length and digits
            while (iz + 1 < ie && a[iz] == '0') ++iz;
            while (jz + 1 < je && b[jz] == '0') ++jz;
            const std::string_view da(a.data() + iz, ie - iz), db(b.data() + jz, je - jz);
            if (da.size() != db.size()) return da.size() < db.size();
            if (da != db) return da < db;
            i = ie;
            j = je;
        } else {
            if (a[i] != b[j]) return (unsigned char)a[i] < (unsigned char)b[j];
            ++i;
            ++j;
        }
    }
    if ((i < a.size()) != (j < b.size())) return j < b.size();  // a prefix of b comes first
    return a < b;  // naturally equal ("x01" vs "x1"): keep a total order
}

void check_output_location(const fs::path& input_dir, const fs::path& out_dir, bool force) {
    if (out_dir.empty()) fail("no output directory given");
    std::error_code ec;
    const fs::path in_canon = fs::weakly_canonical(fs::absolute(input_dir), ec);
    if (ec) fail(input_dir.string() + ": cannot resolve path: " + ec.message());
    fs::path out_canon = fs::weakly_canonical(fs::absolute(out_dir), ec);
    if (ec) fail(out_dir.string() + ": cannot resolve path: " + ec.message());
    if (out_canon.filename().empty()) out_canon = out_canon.parent_path();  // "out/" -> "out"
    const std::string choose = "; choose an output outside the input directory";
    if (out_canon == in_canon) fail("output directory " + out_dir.string() + " is the input directory" + choose);
    if (is_within(out_canon, in_canon))
        fail("output directory " + out_dir.string() + " is inside the input directory " + input_dir.string() + choose);
    if (is_within(in_canon, out_canon))
        fail("output directory " + out_dir.string() + " contains the input directory " + input_dir.string() + choose);
    if (fs::exists(fs::symlink_status(out_canon, ec)) && !force)
        fail("output " + out_dir.string() + " already exists; pass --force to replace it");
}

void add_record_files(CheckpointEdit& edit, const fs::path& input_dir, const nlohmann::ordered_json& moekit_json,
                      const std::string& readme_note) {
    edit.extra_files["moekit.json"] = moekit_json.dump(2) + "\n";
    std::string readme;
    if (std::ifstream in(input_dir / "README.md"); in) readme.assign(std::istreambuf_iterator<char>(in), {});
    if (!readme.empty() && readme.back() != '\n') readme += '\n';
    edit.extra_files["README.md"] = readme + (readme.empty() ? "" : "\n") + readme_note;
}

uint64_t planned_tensor_bytes(const Checkpoint& input, const CheckpointEdit& edit) {
    uint64_t bytes = input.total_tensor_bytes();
    for (const auto& name : edit.drop) bytes -= input.at(name).info->nbytes();
    for (const auto& t : edit.put) {
        if (const auto* e = input.find(t.name); e && !edit.drop.count(t.name)) bytes -= e->info->nbytes();
        bytes += t.nbytes;
    }
    return bytes;
}

WriteResult write_checkpoint(const Checkpoint& input, const CheckpointEdit& edit, const fs::path& out_dir,
                             const WriteOptions& options) {
    check_output_location(input.dir(), out_dir, options.force);
    std::error_code ec;
    fs::path out_canon = fs::weakly_canonical(fs::absolute(out_dir), ec);
    if (out_canon.filename().empty()) out_canon = out_canon.parent_path();
    if (options.max_shard_bytes == 0) fail("max_shard_bytes must be positive");
    if (!edit.config_patch.is_object()) fail("config_patch must be a JSON object (an RFC 7386 merge patch)");
    for (const auto& [name, contents] : edit.extra_files) {
        if (!is_plain_file_name(name)) fail("extra file name '" + name + "' must be a plain file name");
        if (is_weight_or_generated(name)) fail("extra file '" + name + "' would overwrite a file the writer generates");
    }

    const std::vector<OutputTensor> tensors = plan_tensors(input, edit);

    // Greedy sharding in output order.
    std::vector<std::vector<const OutputTensor*>> shards(1);
    uint64_t shard_bytes = 0, total_bytes = 0;
    for (const OutputTensor& t : tensors) {
        if (!shards.back().empty() && shard_bytes + t.nbytes() > options.max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shards.back().push_back(&t);
        shard_bytes += t.nbytes();
        total_bytes += t.nbytes();
    }

    const fs::path parent = out_canon.parent_path();
    fs::create_directories(parent, ec);
    if (ec) fail(parent.string() + ": cannot create: " + ec.message());
    const std::string pid = std::to_string(::getpid());
    const fs::path tmp = parent / (out_canon.filename().string() + ".moekit-tmp-" + pid);
    fs::remove_all(tmp, ec);  // a leftover of a crashed run with our pid
    InterruptGuard interrupts;  // declared before guard: re-raises only after the cleanup
    if (!fs::create_directory(tmp, ec) || ec) fail(tmp.string() + ": cannot create temporary directory: " + ec.message());
    TempDirGuard guard(tmp);

    WriteResult result;
    result.dir = out_dir;
    result.tensor_bytes = total_bytes;
    std::vector<fs::path> written;
    nlohmann::json weight_map = nlohmann::json::object();
    for (std::size_t s = 0; s < shards.size(); ++s) {
        const std::string file = shards.size() == 1 ? "model.safetensors" : shard_name(s, shards.size());
        std::vector<TensorSource> sources;
        sources.reserve(shards[s].size());
        for (const OutputTensor* t : shards[s]) {
            if (t->put) {
                TensorSource source = *t->put;
                source.fill = [fill = std::move(source.fill)](std::byte* dst) {
                    InterruptGuard::check();
                    fill(dst);
                };
                sources.push_back(std::move(source));
                ++result.n_written;
            } else {
                const Checkpoint::Entry* entry = t->copy_from;
                const auto bytes = entry->file->bytes(*entry->info);
                sources.push_back(TensorSource{t->name, entry->info->dtype, entry->info->shape, bytes.size(),
                                               [bytes](std::byte* dst) {
                                                   InterruptGuard::check();
                                                   if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
                                               }});
                ++result.n_copied;
            }
            weight_map[t->name] = file;
        }
        write_safetensors(tmp / file, sources);
        written.push_back(tmp / file);
        result.shard_files.push_back(file);
    }
    if (shards.size() > 1) {
        nlohmann::json index = nlohmann::json::object();
        index["metadata"] = {{"total_size", total_bytes}};
        index["weight_map"] = std::move(weight_map);
        write_text_file(tmp / kIndexName, index.dump(2) + "\n");
        written.push_back(tmp / kIndexName);
    }

    nlohmann::ordered_json config = input.config().json();
    config.merge_patch(edit.config_patch);
    if (!config.is_object()) fail("config_patch turned config.json into a non-object");
    write_text_file(tmp / "config.json", config.dump(2) + "\n");
    written.push_back(tmp / "config.json");

    for (const auto& item : fs::directory_iterator(input.dir())) {
        const std::string name = item.path().filename().string();
        if (!item.is_regular_file() || is_weight_or_generated(name) || edit.extra_files.count(name)) continue;
        fs::copy_file(item.path(), tmp / name, fs::copy_options::overwrite_existing, ec);
        if (ec) fail(item.path().string() + ": cannot copy to " + (tmp / name).string() + ": " + ec.message());
        written.push_back(tmp / name);
    }
    for (const auto& [name, contents] : edit.extra_files) {
        write_text_file(tmp / name, contents);
        written.push_back(tmp / name);
    }
    for (const auto& path : written) fsync_path(path, false);
    fsync_path(tmp, true);

    InterruptGuard::check();
    // Swap into place: move an old output aside, rename the new one in, then delete the old.
    if (fs::exists(fs::symlink_status(out_canon, ec))) {
        if (!options.force) fail("output " + out_dir.string() + " appeared while writing; pass --force to replace it");
        const fs::path old = parent / (out_canon.filename().string() + ".moekit-old-" + pid);
        fs::remove_all(old, ec);
        fs::rename(out_canon, old, ec);
        if (ec) fail(out_dir.string() + ": cannot move the existing output aside: " + ec.message());
        fs::rename(tmp, out_canon, ec);
        if (ec) {
            std::error_code restore_ec;
            fs::rename(old, out_canon, restore_ec);
            fail(out_dir.string() + ": cannot rename the new output into place: " + ec.message());
        }
        guard.dismiss();
        fs::remove_all(old, ec);
    } else {
        fs::rename(tmp, out_canon, ec);
        if (ec) fail(out_dir.string() + ": cannot rename the new output into place: " + ec.message());
        guard.dismiss();
    }
    fsync_path(parent, true);
    return result;
}

}  // namespace moekit::io

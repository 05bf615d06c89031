// `moekit run` (pipeline/pipeline.h): plan, validate, run, assert, summarize.
#include "pipeline/pipeline.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "core/clock.h"
#include "core/error.h"
#include "core/format.h"
#include "io/checkpoint.h"
#include "model/corpus.h"
#include "model/engine.h"

namespace moekit::pipeline {
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

constexpr const char* kMarker = ".moekit-run";

bool has_option(const Step& s, const std::string& key) {
    for (const auto& o : s.options)
        if (o.key == key) return true;
    return false;
}

std::string option_value(const Step& s, const std::string& key, const std::string& fallback) {
    for (const auto& o : s.options)
        if (o.key == key && o.args.size() == 2) return o.args[1];
    return fallback;
}

// Bytes of a checkpoint directory's safetensors files, or of a single file.
uint64_t stored_bytes(const fs::path& p) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::file_size(p, ec);
    uint64_t total = 0;
    if (!fs::is_directory(p, ec)) return 0;
    for (const auto& e : fs::directory_iterator(p, ec))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") total += e.file_size();
    return total;
}

// Peak resident memory since the last reset (Linux: VmHWM; reset through clear_refs).
void reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    if (f) f << "5";
}
uint64_t peak_rss_bytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

void write_atomically(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream f(tmp, std::ios::binary);
        f << text;
        if (!f) throw Error("run", "cannot write " + path.string());
    }
    fs::rename(tmp, path);
}

// The flat metrics of a step's report that assertions usually name (deterministic values only).
Json metrics_of(const std::string& kind, const Json& report) {
    Json m = Json::object();
    if (kind == "eval" && report.contains("total")) {
        const Json& t = report["total"];
        if (t.contains("ppl")) m["ppl"] = t["ppl"];
        if (t.contains("ppl") && t.contains("ref_ppl") && t["ref_ppl"].is_number() && t["ref_ppl"].get<double>() > 0)
            m["ppl_ratio"] = t["ppl"].get<double>() / t["ref_ppl"].get<double>();
        for (const char* k : {"kl_mean", "top1_agreement"})
            if (t.contains(k) && !t[k].is_null()) m[k] = t[k];
        if (t.contains("routing_agreement") && t["routing_agreement"].is_object() && t["routing_agreement"].contains("mean"))
            m["routing_agreement"] = t["routing_agreement"]["mean"];
        for (const char* k : {"ref_ppl", "kl_p99", "tokens", "scored"})
            if (t.contains(k) && !t[k].is_null()) m[k] = t[k];
    }
    if (kind == "profile" && report.contains("model_level")) {
        // Model-level numbers under short names: load.*_mean -> max_vio_mean, ...; consistency srp
        // at m=16 -> srp_m16, sch/lru/lfu at cache ratio 2 -> sch_r2, ...; congestion gamma_*_mean.
        const Json& ml = report["model_level"];
        if (ml.contains("consistency") && ml["consistency"].contains("srp") && ml["consistency"]["srp"].contains("16"))
            m["srp_m16"] = ml["consistency"]["srp"]["16"]["value"];
        if (ml.contains("load"))
            for (const auto& [k, v] : ml["load"].items()) {
                if (v.is_number()) m[k] = v;
                else if (v.is_object() && v.contains("value") && v["value"].is_number()) m[k] = v["value"];
            }
        if (ml.contains("consistency"))
            for (const auto& [family, by] : ml["consistency"].items())
                for (const auto& [param, v] : by.items())
                    if (v.is_object() && v.contains("value") && v["value"].is_number())
                        m[family + (family == "srp" ? "_m" : "_r") + param] = v["value"];
        if (ml.contains("congestion"))
            for (const auto& [k, v] : ml["congestion"].items())
                if (v.is_object() && v.contains("mean") && v["mean"].is_number()) m[k + "_mean"] = v["mean"];
    }
    int64_t forward = 0;
    bool any = false;
    if (report.contains("calibration_source"))
        for (const auto& c : report["calibration_source"]) {
            forward += c.value("forward_tokens", int64_t{0});
            any = true;
        }
    if (any) m["calibration_forward_tokens"] = forward;
    return m;
}

const Json* find_path(const Json& root, const std::string& path) {
    const Json* at = &root;
    size_t begin = 0;
    while (begin <= path.size()) {
        const size_t dot = std::min(path.find('.', begin), path.size());
        const std::string part = path.substr(begin, dot - begin);
        if (at->is_object()) {
            if (!at->contains(part)) return nullptr;
            at = &(*at)[part];
        } else if (at->is_array()) {
            char* end = nullptr;
            const unsigned long i = std::strtoul(part.c_str(), &end, 10);
            if (part.empty() || *end != '\0' || i >= at->size()) return nullptr;
            at = &(*at)[i];
        } else {
            return nullptr;
        }
        begin = dot + 1;
    }
    return at;
}

Json assertion_json(const Assertion& a, const std::optional<double>& v, const std::string& where) {
    Json j{{"assert", a.text}, {"where", where}};
    j["value"] = v ? Json(*v) : Json(nullptr);
    j["holds"] = v.has_value() && a.holds(*v);
    if (!v) j["error"] = "metric not found (or not a number) in the step's metrics or report";
    return j;
}

std::string mb(uint64_t bytes) { return core::fmt("%.1f MB", static_cast<double>(bytes) / 1e6); }

std::string markdown(const Json& s) {
    std::ostringstream out;
    const bool ok = s["ok"].get<bool>();
    out << "# moekit run: " << s["name"].get<std::string>() << "\n\n"
        << "Recipe `" << s["recipe"].get<std::string>() << "`, moekit " << s["moekit_version"].get<std::string>() << ": **"
        << (ok ? "PASSED" : "FAILED") << "** (" << s["asserts_passed"].get<int64_t>() << " of "
        << s["asserts_total"].get<int64_t>() << " assertions hold). Calibration: "
        << s["calibration"]["forward_tokens"].get<int64_t>() << " tokens through the model, "
        << s["calibration"]["reused_entries"].get<int64_t>() << " saved statistics reused.\n\n";
    for (const auto& pass : s["calibration"]["shared_passes"])
        out << "Shared calibration pass on `" << fs::path(pass["model"].get<std::string>()).filename().string() << "` for "
            << pass["steps"].size() << " steps (" << pass["steps"].dump() << "): " << pass["tokens"].get<int64_t>() << " tokens, "
            << core::fmt("%.1f s", pass["timing"]["wall_s"].get<double>()) << ".\n\n";
    out << "| step | kind | input → output | time | peak RSS | size | metrics | status |\n"
        << "|---|---|---|---:|---:|---|---|---|\n";
    for (const auto& st : s["steps"]) {
        const std::string status = st["status"].get<std::string>();
        out << "| " << st["name"].get<std::string>() << " | " << st["kind"].get<std::string>() << " | `"
            << fs::path(st["input"].get<std::string>()).filename().string() << "` → "
            << (st["output"].is_null() ? std::string("—") : "`" + fs::path(st["output"].get<std::string>()).filename().string() + "`")
            << " | ";
        if (status == "skipped") {
            out << "| | | | skipped |\n";
            continue;
        }
        out << core::fmt("%.1f s", st["timing"]["wall_s"].get<double>()) << " | " << mb(st["resources"]["peak_rss_bytes"].get<uint64_t>())
            << " | ";
        if (st["sizes"]["output_bytes"].is_number())
            out << mb(st["sizes"]["input_bytes"].get<uint64_t>()) << " → " << mb(st["sizes"]["output_bytes"].get<uint64_t>());
        out << " | ";
        int shown = 0;
        for (const auto& [k, v] : st["metrics"].items()) {
            if (shown++ == 6) break;
            out << (shown > 1 ? ", " : "") << k << " " << (v.is_number_float() ? core::fmt("%.4g", v.get<double>()) : v.dump());
        }
        out << " | " << status << " |\n";
    }
    auto list = [&](const Json& asserts) {
        for (const auto& a : asserts)
            out << "- " << (a["holds"].get<bool>() ? "✅" : "❌") << " `" << a["assert"].get<std::string>() << "` ("
                << a["where"].get<std::string>() << "): "
                << (a["value"].is_null() ? std::string("not found") : core::fmt("%.6g", a["value"].get<double>())) << "\n";
    };
    if (s["asserts_total"].get<int64_t>() > 0) {
        out << "\n## Assertions\n\n";
        for (const auto& st : s["steps"]) list(st["asserts"]);
        list(s["asserts"]);
    }
    return out.str();
}

// Steps calibrating on the same checkpoint with the same corpus and batching share a pass.
std::string calibration_group(const fs::path& input, const StepCalibration& c) {
    std::ostringstream key;
    key << fs::absolute(input).lexically_normal().string() << '\n' << static_cast<int>(c.corpus.format) << ' ' << c.corpus.seq_len
        << ' ' << c.corpus.max_tokens << ' ' << c.corpus.add_eos << ' '
        << (c.corpus.add_bos ? (*c.corpus.add_bos ? "bos" : "nobos") : "auto") << ' ' << c.batch_tokens;
    for (const auto& d : c.corpus.data) key << '\n' << d.domain << '=' << fs::absolute(d.path).lexically_normal().string();
    return key.str();
}

Json shared_pass(model::CalibrationCache& cache, const std::vector<PlannedStep>& steps,
                 const std::vector<std::optional<StepCalibration>>& calibrations, const std::vector<size_t>& members,
                 int threads, const RunOptions& options) {
    const PlannedStep& first = steps[members.front()];
    Json names = Json::array();
    for (size_t j : members) names.push_back(steps[j].name);
    if (options.progress)
        options.progress("shared calibration pass on " + first.input.string() + " for " + names.dump());
    const io::Checkpoint ckpt = io::Checkpoint::open(first.input);
    model::EngineOptions engine_options;
    engine_options.threads = threads;
    engine_options.device = options.device_ops;  // the same device as the steps (calibration keys name it)
    const model::Engine engine(ckpt, engine_options);
    const model::ModelConfig& mc = engine.config();
    model::CorpusOptions co = calibrations[members.front()]->corpus;
    const model::Corpus corpus = model::load_corpus(ckpt, mc.vocab_size, co);
    std::vector<std::unique_ptr<model::CalibrationSink>> owned;
    std::vector<model::CalibrationSink*> sinks;
    for (size_t j : members)
        for (auto& sink : calibrations[j]->sinks(mc, corpus)) {
            sinks.push_back(sink.get());
            owned.push_back(std::move(sink));
        }
    const model::SharedPass pass = model::run_shared_pass(cache, ckpt, engine, corpus, sinks, options.pass_progress);
    return {{"model", first.input.string()}, {"steps", names}, {"kinds", pass.kinds}, {"tokens", pass.tokens},
            {"timing", {{"wall_s", pass.seconds}}}};
}

}  // namespace

int PlannedStep::line_for(const std::string& message) const {
    // The longest flag the message names wins ("--keep" inside "--keep-x" must not).
    int line = 0;
    size_t best = 0;
    for (size_t i = 0; i < args.size(); ++i) {
        if (arg_lines[i] == 0 || args[i].rfind("--", 0) != 0) continue;
        const std::string flag = args[i].substr(0, args[i].find('='));
        if (flag.size() > best && message.find(flag) != std::string::npos) {
            best = flag.size();
            line = arg_lines[i];
        }
    }
    return line != 0 ? line : step->line;
}

std::optional<double> lookup_metric(const Json& record, const std::string& path) {
    for (const char* where : {"metrics", "report", ""}) {
        const Json* base = *where ? (record.contains(where) ? &record[where] : nullptr) : &record;
        if (base == nullptr) continue;
        if (const Json* v = find_path(*base, path)) {
            if (v->is_number()) return v->get<double>();
            if (v->is_boolean()) return v->get<bool>() ? 1.0 : 0.0;
        }
    }
    return std::nullopt;
}

std::vector<PlannedStep> plan(const Recipe& recipe, const RunOptions& options) {
    const fs::path run_dir = options.runs_dir / recipe.name;
    std::vector<PlannedStep> out;
    fs::path current = recipe.model;
    auto resolve_ref = [&](const Step& s, const std::string& ref, const char* key) -> fs::path {
        if (ref == "model") return recipe.model;
        for (const PlannedStep& p : out)
            if (p.name == ref) {
                if (!p.output_is_model)
                    throw Error("recipe", recipe.where(s.line) + ": step '" + s.name + "': " + key + " '" + ref + "' writes no checkpoint");
                return p.output;
            }
        return fs::path(ref);
    };
    for (const Step& s : recipe.steps) {
        PlannedStep p;
        p.step = &s;
        p.kind = s.kind;
        p.name = s.name;
        p.input = s.input ? resolve_ref(s, *s.input, "input") : current;
        auto add = [&](std::vector<std::string> args, int line) {
            for (auto& a : args) {
                p.args.push_back(std::move(a));
                p.arg_lines.push_back(line);
            }
        };
        add({p.input.string()}, s.input ? s.line : 0);
        for (const StepOption& o : s.options) add(o.args, o.line);

        const bool is_quantize_gguf = s.kind == "quantize" && option_value(s, "format", "gguf") == "gguf";
        bool runs_model = true;
        if (s.kind == "prune" || s.kind == "merge" || s.kind == "svd" || s.kind == "quantize") {
            const bool wants_calib = s.kind != "quantize" || option_value(s, "method", "rtn") == "gptq" ||
                                     has_option(s, "mixed-precision");
            if (!has_option(s, "calib") && recipe.calib && wants_calib) add({"--calib", *recipe.calib}, 0);
            runs_model = has_option(s, "calib") || (recipe.calib && wants_calib);
            p.output = is_quantize_gguf ? run_dir / (s.name + ".gguf") : run_dir / s.name;
            p.output_is_model = !is_quantize_gguf;
        } else if (s.kind == "profile") {
            if (!has_option(s, "data") && !has_option(s, "trace")) {
                if (!recipe.calib)
                    throw Error("recipe", recipe.where(s.line) + ": step '" + s.name + "' needs 'data' (or a recipe-level 'calib')");
                add({"--data", *recipe.calib}, 0);
            }
            p.output = run_dir / s.name;
        } else if (s.kind == "eval") {
            if (!has_option(s, "data")) {
                if (!recipe.data)
                    throw Error("recipe", recipe.where(s.line) + ": step '" + s.name + "' needs 'data' (or a recipe-level 'data')");
                add({"--data", *recipe.data}, 0);
            }
            if (s.ref && *s.ref != "none") p.ref = resolve_ref(s, *s.ref, "ref");
            else if (!s.ref && p.input != recipe.model) p.ref = recipe.model;
            if (p.ref) add({"--ref", p.ref->string()}, s.ref ? s.line : 0);
        }
        if (runs_model)
            for (const StepOption& c : recipe.corpus)
                if (!has_option(s, c.key)) add(c.args, c.line);
        if (!p.output.empty()) add({"-o", p.output.string(), "--force"}, 0);
        if (options.threads > 0 && !has_option(s, "threads")) add({"--threads", std::to_string(options.threads)}, 0);
        if (options.device != "auto" && !has_option(s, "device")) add({"--device", options.device}, 0);
        if (p.output_is_model) current = p.output;
        out.push_back(std::move(p));
    }
    return out;
}

RunResult run(const RunOptions& options, const StepRunner& runner) {
    const auto t_start = std::chrono::steady_clock::now();
    const Recipe recipe = parse_recipe(options.recipe);
    std::vector<PlannedStep> steps = plan(recipe, options);
    // Checkpoints the recipe names (not written by its steps) must exist before anything runs.
    std::error_code ec;
    if (!fs::is_directory(recipe.model, ec))
        throw Error("recipe", recipe.where(recipe.model_line) + ": model '" + recipe.model.string() + "' is not a directory");
    std::set<fs::path> produced;
    for (const PlannedStep& p : steps) {
        for (const auto* path : {&p.input, p.ref ? &*p.ref : nullptr})
            if (path != nullptr && produced.count(*path) == 0 && !fs::exists(*path, ec))
                throw Error("recipe", recipe.where(p.step->line) + ": step '" + p.name + "': '" + path->string() + "' does not exist");
        if (p.output_is_model) produced.insert(p.output);
    }
    std::vector<std::optional<StepCalibration>> calibrations;
    for (const PlannedStep& p : steps) calibrations.push_back(runner(p, RunMode::validate, nullptr).calibration);

    RunResult result;
    result.run_dir = options.runs_dir / recipe.name;
    Json summary;
    summary["schema_version"] = 1;
    summary["command"] = "run";
    summary["name"] = recipe.name;
    summary["recipe"] = recipe.file.string();
    summary["moekit_version"] = options.tool_version;
    summary["model"] = recipe.model.string();
    summary["run_dir"] = result.run_dir.string();
    summary["dry_run"] = options.dry_run;
    int64_t asserts_total = static_cast<int64_t>(recipe.asserts.size());
    for (const Step& s : recipe.steps) asserts_total += static_cast<int64_t>(s.asserts.size());

    if (!options.dry_run) {
        if (fs::exists(result.run_dir, ec) && !fs::exists(result.run_dir / kMarker, ec) && !fs::is_empty(result.run_dir, ec))
            throw Error("run", result.run_dir.string() + " exists and was not made by moekit run; choose another --runs-dir or recipe name");
        fs::create_directories(result.run_dir / "steps", ec);
        if (ec) throw Error("run", "cannot create " + result.run_dir.string() + ": " + ec.message());
        std::ofstream(result.run_dir / kMarker) << "moekit run " << recipe.file.string() << "\n";
        if (!options.reuse_calibration) fs::remove_all(result.run_dir / "calibration", ec);
    }
    model::CalibrationCache cache(result.run_dir / "calibration");

    Json step_records = Json::array();
    Json shared_passes = Json::array();
    std::set<std::string> shared_done;
    bool stopped = false;
    int64_t passed = 0, forward_tokens = 0, reused = 0;
    const int threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());
    // The summary as it stands (also written when a step fails); the full reports live in
    // steps/<name>.json, the summary keeps their metrics.
    auto finish_summary = [&](bool ok, int exit_code, Json top) {
        for (auto& rec : step_records) rec.erase("report");
        summary["ok"] = ok;
        summary["exit_code"] = exit_code;
        summary["asserts_total"] = asserts_total;
        summary["asserts_passed"] = passed;
        summary["calibration"] = {{"dir", cache.dir().string()},
                                  {"reuse_calibration", options.reuse_calibration},
                                  {"forward_tokens", forward_tokens},
                                  {"reused_entries", reused},
                                  {"shared_passes", std::move(shared_passes)}};
        summary["steps"] = std::move(step_records);
        summary["asserts"] = std::move(top);
        summary["timing"] = {{"wall_s", core::seconds_since(t_start)}};
    };
    for (size_t si = 0; si < steps.size(); ++si) {
        PlannedStep& p = steps[si];
        Json rec{{"name", p.name}, {"kind", p.kind}, {"line", p.step->line}, {"input", p.input.string()}};
        rec["output"] = p.output.empty() ? Json(nullptr) : Json(p.output.string());
        rec["ref"] = p.ref ? Json(p.ref->string()) : Json(nullptr);
        rec["args"] = p.args;
        if (options.dry_run || stopped) {
            rec["status"] = options.dry_run ? "planned" : "skipped";
            rec["asserts"] = Json::array();
            step_records.push_back(std::move(rec));
            continue;
        }
        if (!fs::exists(p.input, ec))
            throw Error("recipe", recipe.where(p.step->line) + ": step '" + p.name + "': input '" + p.input.string() + "' does not exist");
        if (calibrations[si]) {
            const std::string group = calibration_group(p.input, *calibrations[si]);
            std::vector<size_t> members;
            for (size_t j = si; j < steps.size(); ++j)
                if (calibrations[j] && calibration_group(steps[j].input, *calibrations[j]) == group) members.push_back(j);
            if (members.size() >= 2 && shared_done.insert(group).second) {
                Json pass = shared_pass(cache, steps, calibrations, members, threads, options);
                forward_tokens += pass["tokens"].get<int64_t>();
                shared_passes.push_back(std::move(pass));
            }
        }
        if (options.progress) options.progress("step '" + p.name + "' (" + p.kind + "): " + p.input.string() + (p.output.empty() ? "" : " -> " + p.output.string()));
        reset_peak_rss();
        const auto t0 = std::chrono::steady_clock::now();
        Json report;
        try {
            report = runner(p, RunMode::execute, &cache).report;
        } catch (const Error& e) {
            // Keep what ran so far on record, then fail naming the step and the option it blames.
            rec["status"] = "error";
            rec["error"] = e.what();
            rec["asserts"] = Json::array();
            step_records.push_back(std::move(rec));
            finish_summary(false, 1, Json::array());
            write_atomically(result.run_dir / "summary.json", summary.dump(2) + "\n");
            throw Error("run", recipe.where(p.line_for(e.what())) + ": step '" + p.name + "' failed: " + e.what());
        }
        const double wall = core::seconds_since(t0);
        rec["status"] = "ok";
        rec["metrics"] = metrics_of(p.kind, report);
        if (report.contains("calibration_source")) {
            rec["calibration_source"] = report["calibration_source"];
            for (const auto& c : report["calibration_source"]) {
                forward_tokens += c.value("forward_tokens", int64_t{0});
                reused += c.value("source", std::string()) == "reused" ? 1 : 0;
            }
        }
        // Profile writes a report, not a model: only model outputs have a size to compare.
        const bool sized = !p.output.empty() && p.kind != "profile";
        const uint64_t in_bytes = stored_bytes(p.input);
        const uint64_t out_bytes = sized ? stored_bytes(p.output) : 0;
        rec["sizes"] = {{"input_bytes", in_bytes}};
        rec["sizes"]["output_bytes"] = sized ? Json(out_bytes) : Json(nullptr);
        rec["sizes"]["ratio"] = sized && in_bytes > 0 ? Json(static_cast<double>(out_bytes) / static_cast<double>(in_bytes)) : Json(nullptr);
        rec["timing"] = {{"wall_s", wall}};
        rec["resources"] = {{"peak_rss_bytes", peak_rss_bytes()}};
        rec["report_file"] = (result.run_dir / "steps" / (p.name + ".json")).string();
        write_atomically(result.run_dir / "steps" / (p.name + ".json"), report.dump(2) + "\n");
        rec["report"] = std::move(report);
        Json asserts = Json::array();
        for (const Assertion& a : p.step->asserts) {
            const auto v = lookup_metric(rec, a.metric);
            asserts.push_back(assertion_json(a, v, recipe.where(a.line)));
            if (asserts.back()["holds"].get<bool>()) ++passed;
            else {
                stopped = true;
                result.asserts_hold = false;
            }
        }
        rec["asserts"] = std::move(asserts);
        if (stopped) rec["status"] = "failed_assert";
        step_records.push_back(std::move(rec));
    }
    Json top = Json::array();
    if (!options.dry_run)
        for (const Assertion& a : recipe.asserts) {
            const std::string step = a.metric.substr(0, a.metric.find('.'));
            const std::string path = a.metric.substr(step.size() + 1);
            std::optional<double> v;
            for (const auto& rec : step_records)
                if (rec["name"] == step) v = lookup_metric(rec, path);
            top.push_back(assertion_json(a, v, recipe.where(a.line)));
            if (top.back()["holds"].get<bool>()) ++passed;
            else result.asserts_hold = false;
        }
    finish_summary(result.asserts_hold, result.exit_code(), std::move(top));
    result.summary = summary;
    if (!options.dry_run) {
        result.markdown = markdown(summary);
        write_atomically(result.run_dir / "summary.json", summary.dump(2) + "\n");
        write_atomically(result.run_dir / "summary.md", result.markdown);
    }
    return result;
}

}  // namespace moekit::pipeline

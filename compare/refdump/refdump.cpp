// refdump: greedy reference traces from llama.cpp's libllama, written as JSON.
//
// For each prompt it records the tokens llama.cpp produces (tokenised the way llama-completion does:
// special tokens added and parsed), the greedy continuation, and at every step the K largest logits.
// Our engine's parity tests replay these traces with teacher forcing, so near-tied logits in random
// models can be compared step by step instead of through free-running text.
//
// Build: compare/refdump/build.sh LLAMA_CPP_DIR   (links the tree's build/bin/libllama.so)

#include "llama.h"

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

// ---- SHA-256 (FIPS 180-4), so a golden names the exact bytes of the model it came from -------------

struct Sha256 {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t block[64];
    size_t used = 0;
    uint64_t total = 0;

    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

    void compress(const uint8_t * p) {
        static const uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 | (uint32_t) p[4 * i + 2] << 8 |
                   (uint32_t) p[4 * i + 3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }

    void update(const uint8_t * p, size_t n) {
        total += n;
        while (n > 0) {
            size_t take = std::min(n, sizeof(block) - used);
            memcpy(block + used, p, take);
            used += take; p += take; n -= take;
            if (used == sizeof(block)) { compress(block); used = 0; }
        }
    }

    std::string hex() {
        uint64_t bits = total * 8;
        uint8_t pad = 0x80;
        update(&pad, 1);
        uint8_t zero = 0;
        while (used != 56) { update(&zero, 1); }
        uint8_t len[8];
        for (int i = 0; i < 8; i++) { len[i] = (uint8_t) (bits >> (56 - 8 * i)); }
        update(len, 8);
        char out[65];
        for (int i = 0; i < 8; i++) { snprintf(out + 8 * i, 9, "%08x", h[i]); }
        return std::string(out, 64);
    }
};

bool file_sha256(const std::string & path, std::string & hex, uint64_t & size) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) { return false; }
    Sha256 sha;
    std::vector<uint8_t> buf(1 << 20);
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) { sha.update(buf.data(), n); }
    fclose(f);
    size = sha.total;
    hex = sha.hex();
    return true;
}

// ---- JSON output ----------------------------------------------------------------------------------

// Token pieces can end mid-character; invalid UTF-8 bytes become U+FFFD so the file stays valid JSON.
std::string json_str(const std::string & s) {
    std::string out = "\"";
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = (unsigned char) s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = len > 0 && i + len <= s.size();
        for (int j = 1; ok && j < len; j++) { ok = ((unsigned char) s[i + j] >> 6) == 0x2; }
        if (!ok) { out += "\\ufffd"; i++; continue; }
        if (len > 1) { out.append(s, i, len); i += len; continue; }
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); out += b; } else { out += (char) c; }
        }
        i++;
    }
    return out + "\"";
}

// Shortest text that reads back as the same f32.
std::string json_f32(float x) {
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, x);
        if (strtof(b, nullptr) == x) { break; }
    }
    return b;
}

template <typename T> std::string json_ints(const std::vector<T> & v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); i++) { out += (i ? "," : "") + std::to_string(v[i]); }
    return out + "]";
}

struct Step {
    int32_t pos;          // position of the input token whose logits these are
    llama_token input;    // that token
    std::vector<std::pair<llama_token, float>> top;  // descending logit, ties by ascending id
    float gap;            // top-1 logit minus top-2 logit
};

// Top-k by logit; equal logits rank the lower id first, as llama.cpp's greedy sampler picks it.
Step rank(const float * logits, int n_vocab, int k, int32_t pos, llama_token input) {
    std::vector<llama_token> ids(n_vocab);
    for (int i = 0; i < n_vocab; i++) { ids[i] = i; }
    auto better = [&](llama_token a, llama_token b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    k = std::min(k, n_vocab);
    std::partial_sort(ids.begin(), ids.begin() + std::max(k, 2), ids.end(), better);
    Step s{pos, input, {}, logits[ids[0]] - logits[ids[1]]};
    for (int i = 0; i < k; i++) { s.top.emplace_back(ids[i], logits[ids[i]]); }
    return s;
}

std::string piece(const llama_vocab * vocab, llama_token t, bool special) {
    char buf[256];
    int n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, special);
    if (n < 0) {
        std::string big(-n, '\0');
        n = llama_token_to_piece(vocab, t, big.data(), (int) big.size(), 0, special);
        return big.substr(0, std::max(n, 0));
    }
    return std::string(buf, n);
}

void usage() {
    fprintf(stderr,
            "usage: refdump -m MODEL (-p PROMPT | -f PROMPT_FILE) [-n N_PREDICT=32] [-k TOP_K=10] [-t THREADS=2]\n"
            "               [-b N_BATCH (default: prompt length; n_ubatch = n_batch)] [-c N_CTX=0 (model's)]\n"
            "               [--flash-attn on|off|auto (default auto)] [--ignore-eos] [--command TEXT]\n"
            "               [--model-command TEXT (how the model file was made)] [-o OUT.json]\n"
            "               [--lora FNAME | --lora-scaled FNAME:SCALE]... [--lora-command TEXT (how the adapters were made)]\n");
}

bool verbose = false;

void quiet_log(ggml_log_level level, const char * text, void *) {
    if (verbose || level == GGML_LOG_LEVEL_ERROR) { fputs(text, stderr); }
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, prompt, out_path, command, model_command;
    bool have_prompt = false, ignore_eos = false;
    int n_predict = 32, top_k = 10, n_threads = 2, n_batch = 0, n_ctx = 0;
    std::string flash = "auto";
    // LoRA adapters applied as llama-completion applies --lora / --lora-scaled (in order given).
    std::vector<std::pair<std::string, float>> loras;
    std::string lora_command;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value\n", a.c_str()); exit(1); }
            return argv[++i];
        };
        if (a == "-m") { model_path = next(); }
        else if (a == "-p") { prompt = next(); have_prompt = true; }
        else if (a == "-f") {
            std::string path = next();
            std::ifstream in(path, std::ios::binary);
            if (!in) { fprintf(stderr, "error: cannot read %s\n", path.c_str()); return 1; }
            std::stringstream ss; ss << in.rdbuf(); prompt = ss.str(); have_prompt = true;
        }
        else if (a == "-n") { n_predict = atoi(next().c_str()); }
        else if (a == "-k") { top_k = atoi(next().c_str()); }
        else if (a == "-t") { n_threads = atoi(next().c_str()); }
        else if (a == "-b") { n_batch = atoi(next().c_str()); }
        else if (a == "-c") { n_ctx = atoi(next().c_str()); }
        else if (a == "--flash-attn") { flash = next(); }
        else if (a == "--ignore-eos") { ignore_eos = true; }
        else if (a == "--command") { command = next(); }
        else if (a == "--model-command") { model_command = next(); }
        else if (a == "-o") { out_path = next(); }
        else if (a == "--lora") { loras.emplace_back(next(), 1.0f); }
        else if (a == "--lora-scaled") {
            std::string v = next();
            size_t colon = v.rfind(':');
            if (colon == std::string::npos) { usage(); return 1; }
            loras.emplace_back(v.substr(0, colon), std::stof(v.substr(colon + 1)));
        }
        else if (a == "--lora-command") { lora_command = next(); }
        else if (a == "-v") { verbose = true; }
        else { usage(); return 1; }
    }
    if (model_path.empty() || !have_prompt || n_predict < 1 || top_k < 2 || n_threads < 1) { usage(); return 1; }
    if (flash != "on" && flash != "off" && flash != "auto") { usage(); return 1; }

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    std::string sha;
    uint64_t size = 0;
    if (!file_sha256(model_path, sha, size)) { fprintf(stderr, "error: cannot read %s\n", model_path.c_str()); return 1; }

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    // No extra weight buffer types: on a CPU with AMX, llama.cpp would move f16 weights into its
    // AMX buffer, whose kernels keep the activations in f32 instead of rounding them to f16, so the
    // same file would give other logits on such a machine than on every other x86-64 CPU.
    mp.use_extra_bufts = false;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "error: llama.cpp cannot load %s\n", model_path.c_str()); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    // Same call llama-completion makes for its prompt: add BOS/EOS as the vocab says, parse specials.
    int n = -llama_tokenize(vocab, prompt.data(), (int) prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> prompt_tokens(std::max(n, 0));
    if (n <= 0 || llama_tokenize(vocab, prompt.data(), (int) prompt.size(), prompt_tokens.data(), n, true, true) != n) {
        fprintf(stderr, "error: the prompt tokenises to nothing\n");
        return 1;
    }
    const int n_prompt = (int) prompt_tokens.size();
    if (n_batch <= 0) { n_batch = n_prompt; }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_batch;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.no_perf = true;
    cp.flash_attn_type = flash == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                       : flash == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "error: cannot create a llama.cpp context\n"); return 1; }
    std::vector<llama_adapter_lora *> adapters;
    std::vector<float> scales;
    std::vector<std::string> lora_sha;
    for (const auto & l : loras) {
        std::string h;
        uint64_t n = 0;
        if (!file_sha256(l.first, h, n)) { fprintf(stderr, "error: cannot read %s\n", l.first.c_str()); return 1; }
        llama_adapter_lora * ad = llama_adapter_lora_init(model, l.first.c_str());
        if (!ad) { fprintf(stderr, "error: llama.cpp cannot load the adapter %s\n", l.first.c_str()); return 1; }
        adapters.push_back(ad);
        scales.push_back(l.second);
        lora_sha.push_back(h);
    }
    if (!adapters.empty() && llama_set_adapters_lora(ctx, adapters.data(), adapters.size(), scales.data()) != 0) {
        fprintf(stderr, "error: cannot apply the adapters\n");
        return 1;
    }
    if ((int) llama_n_ctx(ctx) < n_prompt + n_predict) {
        fprintf(stderr, "error: context %u is too small for %d + %d tokens\n", llama_n_ctx(ctx), n_prompt, n_predict);
        return 1;
    }

    // Prompt in chunks of n_batch (one chunk by default), as llama-completion feeds it.
    for (int i = 0; i < n_prompt; i += n_batch) {
        int len = std::min(n_batch, n_prompt - i);
        if (llama_decode(ctx, llama_batch_get_one(prompt_tokens.data() + i, len)) != 0) {
            fprintf(stderr, "error: llama_decode failed on the prompt\n");
            return 1;
        }
    }
    std::vector<Step> steps;
    std::vector<llama_token> generated;
    std::string text;
    bool stopped_at_eog = false;
    llama_token input = prompt_tokens.back();
    for (int i = 0; i < n_predict; i++) {
        Step s = rank(llama_get_logits_ith(ctx, -1), n_vocab, top_k, n_prompt - 1 + i, input);
        llama_token next = s.top[0].first;
        steps.push_back(s);
        generated.push_back(next);
        if (!ignore_eos && llama_vocab_is_eog(vocab, next)) { stopped_at_eog = true; break; }
        text += piece(vocab, next, false);
        if (i + 1 == n_predict) { break; }
        input = next;
        if (llama_decode(ctx, llama_batch_get_one(&input, 1)) != 0) {
            fprintf(stderr, "error: llama_decode failed at step %d\n", i + 1);
            return 1;
        }
    }

    float min_gap = steps[0].gap;
    for (const Step & s : steps) { min_gap = std::min(min_gap, s.gap); }
    std::string base = model_path.substr(model_path.find_last_of('/') + 1);
    const char * fa = flash == "on" ? "enabled" : flash == "off" ? "disabled" : "auto";

    std::ostringstream j;
    j << "{\n";
    j << "  \"format\": \"rs-llama-refdump-v1\",\n";
    j << "  \"command\": " << json_str(command) << ",\n";
    j << "  \"model\": {\"file\": " << json_str(base) << ", \"size\": " << size << ", \"sha256\": \"" << sha
      << "\", \"made_by\": " << json_str(model_command) << "},\n";
    if (!loras.empty()) {
        j << "  \"lora\": {\"made_by\": " << json_str(lora_command) << ", \"adapters\": [";
        for (size_t i = 0; i < loras.size(); i++) {
            std::string f = loras[i].first.substr(loras[i].first.find_last_of('/') + 1);
            j << (i ? ", " : "") << "{\"file\": " << json_str(f) << ", \"sha256\": \"" << lora_sha[i]
              << "\", \"scale\": " << json_f32(loras[i].second) << "}";
        }
        j << "]},\n";
    }
    j << "  \"settings\": {\"n_threads\": " << n_threads << ", \"n_batch\": " << n_batch << ", \"n_ubatch\": " << n_batch
      << ", \"n_ctx\": " << llama_n_ctx(ctx) << ", \"flash_attn\": \"" << fa << "\", \"top_k\": " << top_k
      << ", \"n_predict\": " << n_predict << ", \"ignore_eos\": " << (ignore_eos ? "true" : "false")
      << ", \"add_special\": true, \"parse_special\": true},\n";
    j << "  \"prompt\": " << json_str(prompt) << ",\n";
    j << "  \"prompt_tokens\": " << json_ints(prompt_tokens) << ",\n";
    j << "  \"generated\": " << json_ints(generated) << ",\n";
    j << "  \"generated_text\": " << json_str(text) << ",\n";
    j << "  \"stopped_at_eog\": " << (stopped_at_eog ? "true" : "false") << ",\n";
    j << "  \"min_gap\": " << json_f32(min_gap) << ",\n";
    j << "  \"steps\": [\n";
    for (size_t i = 0; i < steps.size(); i++) {
        const Step & s = steps[i];
        j << "    {\"pos\": " << s.pos << ", \"input\": " << s.input << ", \"gap\": " << json_f32(s.gap) << ", \"top\": [";
        for (size_t t = 0; t < s.top.size(); t++) {
            j << (t ? ", " : "") << "[" << s.top[t].first << ", " << json_f32(s.top[t].second) << "]";
        }
        j << "]}" << (i + 1 < steps.size() ? "," : "") << "\n";
    }
    j << "  ]\n}\n";

    if (out_path.empty()) {
        fputs(j.str().c_str(), stdout);
    } else {
        std::ofstream out(out_path, std::ios::binary);
        out << j.str();
        if (!out) { fprintf(stderr, "error: cannot write %s\n", out_path.c_str()); return 1; }
    }
    fprintf(stderr, "refdump: %d prompt tokens, %zu generated, min top-1/top-2 gap %s\n", n_prompt, generated.size(),
            json_f32(min_gap).c_str());

    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

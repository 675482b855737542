// tensordump: every f32 intermediate tensor of one llama.cpp forward pass, as raw files, so that
// rs-llama's own dump (RS_LLAMA_DUMP=DIR) of the same prompt can be compared op by op.
//
// usage: tensordump -m MODEL -p PROMPT -o DIR [-t N] [--flash-attn on|off|auto] [--steps N]
// Writes DIR/<step>/<name>.<k>.f32 (k counts repeated names within a pass, in graph order) and
// DIR/<step>/index.txt with "name k ne0 ne1 ne2 ne3" per file. Step 0 is the prompt; each later
// step decodes the greedy token of the one before.
// Build: compare/tensordump/build.sh

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

struct Dump {
    std::string dir;
    std::map<std::string, int> seen;
    FILE * index = nullptr;
    std::vector<float> buf;
};

bool observe(ggml_tensor * t, bool ask, void * user) {
    if (ask) {
        return t->type == GGML_TYPE_F32;
    }
    auto * d = static_cast<Dump *>(user);
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        return true;
    }
    const std::string name = ggml_get_name(t);
    const int k = d->seen[name]++;
    d->buf.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, d->buf.data(), 0, ggml_nbytes(t));
    const std::string path = d->dir + "/" + name + "." + std::to_string(k) + ".f32";
    if (FILE * f = fopen(path.c_str(), "wb")) {
        fwrite(d->buf.data(), sizeof(float), d->buf.size(), f);
        fclose(f);
    }
    fprintf(d->index, "%s %d %lld %lld %lld %lld\n", name.c_str(), k, (long long) t->ne[0], (long long) t->ne[1],
            (long long) t->ne[2], (long long) t->ne[3]);
    return true;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, prompt, out, flash = "auto";
    int n_threads = 2, steps = 1;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "-m") { model_path = next(); }
        else if (a == "-p") { prompt = next(); }
        else if (a == "-o") { out = next(); }
        else if (a == "-t") { n_threads = atoi(next().c_str()); }
        else if (a == "--flash-attn") { flash = next(); }
        else if (a == "--steps") { steps = atoi(next().c_str()); }
        else { fprintf(stderr, "error: unknown argument %s\n", a.c_str()); return 1; }
    }
    if (model_path.empty() || prompt.empty() || out.empty()) {
        fprintf(stderr, "usage: tensordump -m MODEL -p PROMPT -o DIR [-t N] [--flash-attn on|off|auto] [--steps N]\n");
        return 1;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    // No extra weight buffer types: on a CPU with AMX, llama.cpp would move f16 weights into its
    // AMX buffer, whose kernels keep the activations in f32 instead of rounding them to f16, so the
    // same file would give other logits on such a machine than on every other x86-64 CPU.
    mp.use_extra_bufts = false;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "error: cannot load %s\n", model_path.c_str()); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    int n = -llama_tokenize(vocab, prompt.data(), (int) prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> tokens(n > 0 ? n : 0);
    if (n <= 0 || llama_tokenize(vocab, prompt.data(), (int) prompt.size(), tokens.data(), n, true, true) != n) {
        fprintf(stderr, "error: the prompt tokenises to nothing\n");
        return 1;
    }
    Dump dump;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = cp.n_ubatch = (uint32_t) tokens.size();
    cp.n_threads = cp.n_threads_batch = n_threads;
    cp.no_perf = true;
    cp.cb_eval = observe;
    cp.cb_eval_user_data = &dump;
    cp.flash_attn_type = flash == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                       : flash == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "error: cannot create a context\n"); return 1; }
    std::vector<llama_token> input = tokens;
    for (int step = 0; step < steps; step++) {
        dump.dir = out + "/" + std::to_string(step);
        dump.seen.clear();
        std::string mk = "mkdir -p '" + dump.dir + "'";
        if (system(mk.c_str()) != 0) { return 1; }
        dump.index = fopen((dump.dir + "/index.txt").c_str(), "w");
        if (!dump.index) { return 1; }
        fprintf(dump.index, "# tokens");
        for (llama_token t : input) { fprintf(dump.index, " %d", t); }
        fprintf(dump.index, "\n");
        if (llama_decode(ctx, llama_batch_get_one(input.data(), (int) input.size())) != 0) {
            fprintf(stderr, "error: llama_decode failed\n");
            return 1;
        }
        fclose(dump.index);
        const float * logits = llama_get_logits_ith(ctx, -1);
        const int n_vocab = llama_vocab_n_tokens(vocab);
        int best = 0;
        for (int i = 1; i < n_vocab; i++) { if (logits[i] > logits[best]) { best = i; } }
        input.assign(1, best);
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

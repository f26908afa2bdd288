// The emulated CUDA library's C functions (the FFI targets of each family
// are emulator/walk.cc and emulator/tiled.cc, on emulator/launcher.h). Built
// with JAXSHIFT_EMULATE into libjaxshift_cuda_emulated.so; jaxshift/_src/ffi.py
// registers its targets jaxshift_{forward,backward}_cuda_emulated_{walk,tiled}
// for the CPU when JAXSHIFT_CPU_KERNEL=cuda-emulated (the family
// JAXSHIFT_CUDA_KERNEL names). A check failure of the emulator
// (out-of-bounds or misaligned access, shared-memory race or uninitialised
// read) fails the call with the kernel, thread and source line.
//
// C functions for the tests and benchmarks/access_model.py:
//   jaxshift_cuda_emulated_configure(record, index64)
//     record: keep the memory-access model; index64: force 64-bit offsets.
//   jaxshift_cuda_emulated_stats(buf, len): the model per kernel as JSON.
//   jaxshift_cuda_emulated_reset(): clears it.
//   jaxshift_cuda_emulated_selftest(bug, buf, len): a kernel with one planted bug.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/phased.h"
#include "emulator/emulator.h"
#include "emulator/launcher.h"
#include "ffi/common.h"

namespace jaxshift {
namespace {

using emu::EmuLauncher;

// A kernel with one deliberate bug, for the tests of the emulator's checks
// (jaxshift_cuda_emulated_selftest): 0 none, 1 a global read past the end,
// 2 a shared write-read race, 3 a read of unwritten shared memory,
// 4 a misaligned 16-byte load, 5 a store into an input.
struct SelfTest {
  struct Args {
    phased::Launch plan;
    const float* in;
    float* out;
    int bug;
  };
  static constexpr int kPhases = 2;
  static constexpr const char* kName = "selftest";
  static constexpr bool kIndex64 = false;
  static void phase(int ph, const Args& a, int64_t, int tid, unsigned char* smem) {
    float* sh = reinterpret_cast<float*>(smem);
    if (ph == 0) {
      const int i = a.bug == 1 && tid == 255 ? 256 : tid;
      phased::sst(sh + tid, phased::gld(a.in + i));
      if (a.bug == 2 && tid == 1) phased::sld(sh);  // thread 0 writes it in this phase
      if (a.bug == 4 && tid == 0) {
        phased::Vec16 v;
        phased::gld16(a.in + 1, &v);
      }
      if (a.bug == 5 && tid == 0) phased::gst(const_cast<float*>(a.in), 0.0f);
    } else {
      const int j = a.bug == 3 && tid == 0 ? 256 : (tid + 1) % phased::kThreads;
      phased::gst(a.out + tid, phased::sld(sh + j));
    }
  }
};

}  // namespace
}  // namespace jaxshift

// Runs SelfTest with `bug`; writes the emulator's report ("" if none) to buf.
extern "C" __attribute__((visibility("default"))) int jaxshift_cuda_emulated_selftest(int bug,
                                                                                     char* buf,
                                                                                     int len) {
  using namespace jaxshift;
  std::vector<phased::Vec16> in(64), out(64);
  const uintptr_t i0 = reinterpret_cast<uintptr_t>(in.data());
  const uintptr_t o0 = reinterpret_cast<uintptr_t>(out.data());
  EmuLauncher l({emu::Buffer{"in", i0, i0 + 1024, false}, emu::Buffer{"out", o0, o0 + 1024, true}},
                false);
  SelfTest::Args a{};
  a.plan = phased::launch_of(1, 257 * 4 + 12);
  a.in = reinterpret_cast<const float*>(in.data());
  a.out = reinterpret_cast<float*>(out.data());
  a.bug = bug;
  const ffi::Error e = l.launch<SelfTest>(a);
  const std::string msg = e.failure() ? e.message() : "";
  snprintf(buf, static_cast<size_t>(len), "%s", msg.c_str());
  return e.failure() ? 1 : 0;
}

namespace ffi = xla::ffi;

JAXSHIFT_EXPORT_CONTRACT(cuda_emulated)

extern "C" __attribute__((visibility("default"))) int jaxshift_cuda_emulated_configure(
    int record, int index64) {
  jaxshift::emu::Settings& s = jaxshift::emu::settings();
  std::lock_guard<std::mutex> lock(s.mu);
  s.record = record != 0;
  s.index64 = index64 != 0;
  return 0;
}

extern "C" __attribute__((visibility("default"))) void jaxshift_cuda_emulated_reset() {
  jaxshift::emu::Settings& s = jaxshift::emu::settings();
  std::lock_guard<std::mutex> lock(s.mu);
  s.stats.clear();
}

// Writes the model as JSON ({kernel: {field: value}}) into buf (len bytes,
// NUL-terminated); returns the length it needs.
extern "C" __attribute__((visibility("default"))) int jaxshift_cuda_emulated_stats(char* buf,
                                                                                  int len) {
  jaxshift::emu::Settings& s = jaxshift::emu::settings();
  std::lock_guard<std::mutex> lock(s.mu);
  std::string out = "{";
  for (const auto& [name, t] : s.stats) {
    char one[1024];
    snprintf(one, sizeof(one),
             "%s\"%s\": {\"launches\": %lld, \"ld_requests\": %lld, \"ld_sectors\": %lld, "
             "\"ld_ideal\": %lld, \"st_requests\": %lld, \"st_sectors\": %lld, \"st_ideal\": %lld, "
             "\"sh_requests\": %lld, \"sh_wavefronts\": %lld, \"sh_ideal\": %lld, "
             "\"sh_worst\": %lld, \"vec_accesses\": %lld, \"vec_misaligned\": %lld, "
             "\"ld_distinct_sectors\": %lld, \"st_distinct_sectors\": %lld, \"ld_bytes\": %lld, "
             "\"st_bytes\": %lld}",
             out.size() > 1 ? ", " : "", name.c_str(), (long long)t.launches,
             (long long)t.ld_requests, (long long)t.ld_sectors, (long long)t.ld_ideal,
             (long long)t.st_requests, (long long)t.st_sectors, (long long)t.st_ideal,
             (long long)t.sh_requests, (long long)t.sh_wavefronts, (long long)t.sh_ideal,
             (long long)t.sh_worst, (long long)t.vec_accesses, (long long)t.vec_misaligned,
             (long long)t.ld_distinct, (long long)t.st_distinct, (long long)t.ld_bytes,
             (long long)t.st_bytes);
    out += one;
    out.pop_back();  // the closing brace: the sites follow
    out += ", \"sites\": {";
    bool first = true;
    for (const auto& [site, x] : t.sites) {
      snprintf(one, sizeof(one), "%s\"%s\": [%lld, %lld, %lld]", first ? "" : ", ", site.c_str(),
               (long long)x.requests, (long long)x.sectors, (long long)x.ideal);
      out += one;
      first = false;
    }
    out += "}}";
  }
  out += "}";
  if (buf && len > 0) {
    const size_t n = out.size() < static_cast<size_t>(len - 1) ? out.size() : len - 1;
    memcpy(buf, out.data(), n);
    buf[n] = 0;
  }
  return static_cast<int>(out.size()) + 1;
}

// The host emulator of the CUDA kernels (host only; JAXSHIFT_EMULATE builds).
//
// It runs a launch of a phased kernel (cuda/phased.h describes the contract;
// both families are written so) block by block, and within a block phase by
// phase with every thread of the phase in turn, and sees every memory access
// through core/device.h's hook, emu::track, which it defines here. It checks,
// throwing EmuError before the access happens:
//   * global accesses: inside one of the call's buffers, stores only into
//     outputs, vector accesses aligned to their width (a fault on a GPU);
//   * shared accesses: inside the block's allocation, no read of a word that
//     no thread of this block wrote for the current item (uninitialised), and
//     no race: a word written by one thread and read or written by another
//     between the same two barriers.
// With recording on it also keeps the memory-access model: accesses are
// grouped into warp requests (the k-th access of a call site by each lane of
// a warp, within one phase), and each request is scored:
//   global: 32-byte sectors touched against the ideal ceil(distinct bytes / 32);
//   shared: wavefronts against the ideal (one per 128 bytes of lanes: 32 lanes
//           of 4-byte words, 16 of 8, 8 of 16), a word counted once however
//           many lanes read it (broadcast);
// and the distinct global sectors each launch reads and writes (its DRAM
// traffic if every re-read hit in L2).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/device.h"
#include "cuda/phased.h"

namespace jaxshift {
namespace emu {

// What sees the accesses of this thread's kernel code (the emulator of the
// launch in flight), or null.
struct Tracker {
  virtual void access(int space, const void* p, int bytes, bool store, int line,
                      const char* file) = 0;

 protected:
  ~Tracker() = default;
};
inline Tracker*& tracker() {
  static thread_local Tracker* t = nullptr;
  return t;
}

// core/device.h's hook.
inline void track(int space, const void* p, int bytes, bool is_store, int line,
                  const char* file) {
  if (Tracker* t = tracker()) t->access(space, p, bytes, is_store, line, file);
}

struct EmuError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A call site of a tracked access: source line and file.
struct Site {
  int line;
  const char* file;
  bool operator<(const Site& o) const { return line != o.line ? line < o.line : file < o.file; }
};

struct Buffer {
  const char* name;
  uintptr_t lo, hi;
  bool writable;
};

// The memory-access model of one kernel: sums over its launches.
struct SiteStats {
  int64_t requests = 0, sectors = 0, ideal = 0;  // global: sectors; shared: wavefronts
};

struct Stats {
  std::map<std::string, SiteStats> sites;  // "file:line" of each access site
  int64_t launches = 0;
  int64_t ld_requests = 0, ld_sectors = 0, ld_ideal = 0;
  int64_t st_requests = 0, st_sectors = 0, st_ideal = 0;
  int64_t sh_requests = 0, sh_wavefronts = 0, sh_ideal = 0, sh_worst = 0;
  int64_t vec_accesses = 0, vec_misaligned = 0;
  int64_t ld_distinct = 0, st_distinct = 0;  // distinct sectors, summed over launches
  int64_t ld_bytes = 0, st_bytes = 0;        // bytes requested

  Stats& operator+=(const Stats& s) {
    for (const auto& [site, x] : s.sites) {
      SiteStats& y = sites[site];
      y.requests += x.requests;
      y.sectors += x.sectors;
      y.ideal += x.ideal;
    }
    launches += s.launches;
    ld_requests += s.ld_requests;
    ld_sectors += s.ld_sectors;
    ld_ideal += s.ld_ideal;
    st_requests += s.st_requests;
    st_sectors += s.st_sectors;
    st_ideal += s.st_ideal;
    sh_requests += s.sh_requests;
    sh_wavefronts += s.sh_wavefronts;
    sh_ideal += s.sh_ideal;
    sh_worst = std::max(sh_worst, s.sh_worst);
    vec_accesses += s.vec_accesses;
    vec_misaligned += s.vec_misaligned;
    ld_distinct += s.ld_distinct;
    st_distinct += s.st_distinct;
    ld_bytes += s.ld_bytes;
    st_bytes += s.st_bytes;
    return *this;
  }
};

class Emulator final : public Tracker {
 public:
  explicit Emulator(std::vector<Buffer> buffers, bool record)
      : buffers_(std::move(buffers)), record_(record), lanes_(32) {}

  // Stats of the last launch (when recording).
  Stats stats;

  void access(int space, const void* p, int bytes, bool is_store, int line,
              const char* file) override {
    const Site site{line, file};
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (bytes >= 8 && a % static_cast<uintptr_t>(bytes) != 0) {
      fail("misaligned " + std::to_string(bytes) + "-byte " + (space ? "shared" : "global") +
               " access",
           site);
    }
    if (space == kGlobal) {
      check_global(a, bytes, is_store, site);
    } else {
      check_shared(a, bytes, is_store, site);
    }
    if (record_) lanes_[tid_ % 32].push_back(Access{site, space, is_store, a, bytes});
  }

  // A launch of a phased kernel (cuda/phased.h).
  template <class K>
  void launch(const typename K::Args& args) {
    const auto& p = args.plan;
    begin_launch(p.smem);
    for (int64_t b = 0; b < p.grid; ++b) {
      for (int64_t item = b; item < p.items; item += p.grid) {
        ++epoch_;
        for (int ph = 0; ph < K::kPhases; ++ph) {
          begin_phase();
          for (int t = 0; t < phased::kThreads; ++t) {
            tid_ = t;
            K::phase(ph, args, item, t, smem_);
            if (record_ && t % 32 == 31) end_warp();
          }
        }
      }
    }
    end_launch();
  }

 private:
  struct Access {
    Site site;
    int space;
    bool store;
    uintptr_t addr;
    int bytes;
  };

  void fail(const std::string& what, const Site& site) {
    const char* base = strrchr(site.file, '/');
    char where[160];
    snprintf(where, sizeof(where), " (thread %d, %s:%d)", tid_, base ? base + 1 : site.file,
             site.line);
    throw EmuError(what + where);
  }

  void check_global(uintptr_t a, int bytes, bool is_store, const Site& site) {
    for (const Buffer& b : buffers_) {
      if (a >= b.lo && a + bytes <= b.hi) {
        if (is_store && !b.writable) fail(std::string("store into input buffer ") + b.name, site);
        return;
      }
    }
    fail(std::string(is_store ? "store" : "load") + " of " + std::to_string(bytes) +
             " bytes outside every buffer of the call",
         site);
  }

  void check_shared(uintptr_t a, int bytes, bool is_store, const Site& site) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(smem_);
    if (a < base || a + bytes > base + smem_bytes_) {
      fail("shared access outside the block's " + std::to_string(smem_bytes_) + " bytes", site);
    }
    // Tracked in 2-byte units (the narrowest access of the kernels).
    if ((a - base) % 2 || bytes % 2) fail("odd-sized shared access", site);
    for (uintptr_t w = (a - base) / 2; w < (a - base + bytes) / 2; ++w) {
      int32_t& writer = writer_[w];
      int32_t& reader = reader_[w];
      if (writer == -1 && reader == -1) touched_.push_back(w);
      if (is_store) {
        if (writer >= 0 && writer != tid_) fail("shared write-write race", site);
        if (reader == -2 || (reader >= 0 && reader != tid_)) fail("shared read-write race", site);
        writer = tid_;
        written_[w] = epoch_;
      } else {
        if (written_[w] != epoch_) fail("read of shared memory not written for this item", site);
        if (writer >= 0 && writer != tid_) fail("shared write-read race", site);
        reader = (reader == -1 || reader == tid_) ? tid_ : -2;
      }
    }
  }

  void begin_launch(size_t smem_bytes) {
    smem_bytes_ = smem_bytes;
    storage_.assign(smem_bytes / 16 + 1, phased::Vec16{});
    smem_ = reinterpret_cast<unsigned char*>(storage_.data());
    const size_t words = smem_bytes / 2 + 1;
    writer_.assign(words, -1);
    reader_.assign(words, -1);
    written_.assign(words, 0);
    touched_.clear();
    epoch_ = 0;
    stats = Stats{};
    stats.launches = 1;
    ld_sectors_.clear();
    st_sectors_.clear();
    for (auto& l : lanes_) l.clear();
  }

  void begin_phase() {
    for (uintptr_t w : touched_) writer_[w] = reader_[w] = -1;
    touched_.clear();
  }

  void end_launch() {
    stats.ld_distinct = static_cast<int64_t>(ld_sectors_.size());
    stats.st_distinct = static_cast<int64_t>(st_sectors_.size());
  }

  // Groups the 32 lanes' accesses into warp requests and scores them.
  void end_warp() {
    std::map<std::tuple<Site, int, bool, int>, std::vector<std::pair<uintptr_t, int>>> requests;
    for (auto& lane : lanes_) {
      std::map<std::tuple<Site, int, bool>, int> seen;
      for (const Access& x : lane) {
        const int k = seen[{x.site, x.space, x.store}]++;
        requests[{x.site, x.space, x.store, k}].emplace_back(x.addr, x.bytes);
      }
      lane.clear();
    }
    for (auto& [key, list] : requests) {
      const int space = std::get<1>(key);
      const bool is_store = std::get<2>(key);
      for (const auto& [a, n] : list) {
        if (n >= 8) {
          ++stats.vec_accesses;
          if (a % n) ++stats.vec_misaligned;
        }
      }
      int64_t got, ideal;
      if (space == kGlobal) {
        score_global(list, is_store, &got, &ideal);
      } else {
        score_shared(list, &got, &ideal);
      }
      const Site& site = std::get<0>(key);
      const char* base = strrchr(site.file, '/');
      SiteStats& ss = stats.sites[std::string(base ? base + 1 : site.file) + ":" +
                                  std::to_string(site.line) + (space ? " shared" : " global") +
                                  (is_store ? " store" : " load")];
      ++ss.requests;
      ss.sectors += got;
      ss.ideal += ideal;
    }
  }

  void score_global(const std::vector<std::pair<uintptr_t, int>>& list, bool is_store,
                    int64_t* got, int64_t* ideal_out) {
    std::vector<std::pair<uintptr_t, uintptr_t>> spans;  // [begin, end) of each lane
    for (const auto& [a, n] : list) spans.emplace_back(a, a + n);
    std::sort(spans.begin(), spans.end());
    std::vector<uintptr_t> sectors;
    int64_t distinct = 0;
    uintptr_t covered = 0;  // bytes below this are counted
    for (const auto& [b, e] : spans) {
      const uintptr_t from = std::max(b, covered);
      if (e > from) distinct += static_cast<int64_t>(e - from);
      covered = std::max(covered, e);
      for (uintptr_t s = b / 32; s <= (e - 1) / 32; ++s) {
        if (sectors.empty() || sectors.back() != s) sectors.push_back(s);
      }
    }
    std::sort(sectors.begin(), sectors.end());
    sectors.erase(std::unique(sectors.begin(), sectors.end()), sectors.end());
    const int64_t ideal = (distinct + 31) / 32;
    *got = static_cast<int64_t>(sectors.size());
    *ideal_out = ideal;
    auto& all = is_store ? st_sectors_ : ld_sectors_;
    all.insert(sectors.begin(), sectors.end());
    if (is_store) {
      ++stats.st_requests;
      stats.st_sectors += static_cast<int64_t>(sectors.size());
      stats.st_ideal += ideal;
      stats.st_bytes += distinct;
    } else {
      ++stats.ld_requests;
      stats.ld_sectors += static_cast<int64_t>(sectors.size());
      stats.ld_ideal += ideal;
      stats.ld_bytes += distinct;
    }
  }

  void score_shared(const std::vector<std::pair<uintptr_t, int>>& list, int64_t* got,
                    int64_t* ideal_out) {
    const int width = list.empty() ? 4 : std::max(4, list[0].second);
    const size_t per = static_cast<size_t>(128 / width);  // lanes per wavefront
    int64_t waves = 0, ideal = 0, worst = 1;
    for (size_t g = 0; g < list.size(); g += per) {
      std::map<int, std::unordered_set<uintptr_t>> banks;
      for (size_t i = g; i < std::min(list.size(), g + per); ++i) {
        const auto& [a, n] = list[i];
        for (uintptr_t w = a / 4; w < (a + n + 3) / 4; ++w) banks[static_cast<int>(w % 32)].insert(w);
      }
      int64_t ways = 1;
      for (const auto& b : banks) ways = std::max<int64_t>(ways, static_cast<int64_t>(b.second.size()));
      waves += ways;
      ideal += 1;
      worst = std::max(worst, ways);
    }
    *got = waves;
    *ideal_out = ideal;
    ++stats.sh_requests;
    stats.sh_wavefronts += waves;
    stats.sh_ideal += ideal;
    stats.sh_worst = std::max(stats.sh_worst, worst);
  }

  std::vector<Buffer> buffers_;
  bool record_;
  int tid_ = 0;
  unsigned char* smem_ = nullptr;
  size_t smem_bytes_ = 0;
  std::vector<phased::Vec16> storage_;
  std::vector<int32_t> writer_, reader_;
  std::vector<int64_t> written_;
  std::vector<uintptr_t> touched_;
  int64_t epoch_ = 0;
  std::vector<std::vector<Access>> lanes_;
  std::unordered_set<uintptr_t> ld_sectors_, st_sectors_;
};

// Makes `e` the tracker of this thread for a scope.
class Scope {
 public:
  explicit Scope(Tracker* e) : prev_(tracker()) { tracker() = e; }
  ~Scope() { tracker() = prev_; }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Tracker* prev_;
};

}  // namespace emu
}  // namespace jaxshift

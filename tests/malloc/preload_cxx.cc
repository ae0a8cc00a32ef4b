// Run under LD_PRELOAD=libbrisk.so: C++ new/delete (which libstdc++ routes
// through malloc and free), containers, aligned new, threads handing
// objects to each other, and an exception (its object is allocated too).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

struct alignas(256) Wide {
    char bytes[300];
};

int main()
{
    std::map<std::string, std::vector<int>> table;
    for (int i = 0; i < 200000; i++)
        table[std::to_string(i % 7000)].push_back(i);
    std::size_t total = 0;
    for (auto &entry : table)
        total += entry.second.size();

    std::vector<std::unique_ptr<Wide>> wide;
    for (int i = 0; i < 1000; i++) {
        wide.emplace_back(new Wide());
        if (reinterpret_cast<std::uintptr_t>(wide.back().get()) % 256 != 0) {
            std::fprintf(stderr, "aligned new returned a misaligned pointer\n");
            return 1;
        }
    }

    std::vector<std::unique_ptr<std::string>> handoff(20000);
    std::thread producer([&] {
        for (std::size_t i = 0; i < handoff.size(); i++)
            handoff[i].reset(new std::string(100 + i % 300, 'x'));
    });
    producer.join();
    std::thread consumer([&] { handoff.clear(); });
    consumer.join();

    try {
        throw std::runtime_error(std::string(1000, 'e'));
    } catch (const std::exception &e) {
        total += std::string(e.what()).size();
    }
    std::printf("%zu\n", total);
    return total == 201000 ? 0 : 1;
}

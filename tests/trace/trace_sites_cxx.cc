// A C++ program with known allocation sites for test_trace_report.py:
// cxx_peak holds new Node[100] (9600 bytes), cxx_vector a vector of 5000
// uint64_t (40000 bytes) at the peak, both freed; cxx_leak leaks 5 Nodes
// (480 bytes) through operator new.
#include <cstdint>
#include <cstdio>
#include <vector>

struct Node {
    char data[96];
};

static Node *leaked[5];

__attribute__((noinline)) static Node *cxx_peak() { return new Node[100]; }

__attribute__((noinline)) static std::vector<std::uint64_t> *cxx_vector()
{
    auto *v = new std::vector<std::uint64_t>();
    v->reserve(5000);
    return v;
}

__attribute__((noinline)) static void cxx_leak()
{
    for (auto &n : leaked) {
        n = new Node;
        n->data[0] = 1;
    }
}

int main()
{
    Node *nodes = cxx_peak();
    nodes[99].data[95] = 7;
    auto *v = cxx_vector();
    v->push_back(nodes[99].data[95]);
    unsigned long sum = (*v)[0];
    delete v;
    delete[] nodes;
    cxx_leak();
    std::printf("sum %lu\n", sum + static_cast<unsigned long>(leaked[4]->data[0]));
    return 0;
}

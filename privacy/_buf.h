/* A buffer a kernel may hold (privacy/_table.c, privacy/_admit.c): ``release`` frees it
 * once, however far the argument checks got, so every exit path can call it. */
#ifndef PRIVMON_BUF_H
#define PRIVMON_BUF_H

#include <Python.h>

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static inline void
release(Buf *b)
{
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

#endif

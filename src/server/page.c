/* The page served at / (web/index.html: plain HTML and JavaScript, no build step), embedded in
 * the binary. The Makefile passes the file's path. */
#include "server/server_impl.h"

#if !defined(DW_WEB_PAGE)
#error "DW_WEB_PAGE must name web/index.html"
#endif

__asm__(".section .rodata\n.balign 16\ndw__web_page:\n.incbin \"" DW_WEB_PAGE "\"\ndw__web_page_end:\n.previous\n");
extern const unsigned char dw__web_page[], dw__web_page_end[];

const unsigned char *srv_page(size_t *len) {
    *len = (size_t)(dw__web_page_end - dw__web_page);
    return dw__web_page;
}

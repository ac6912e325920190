// stasis-nft: runs the nftables commands read on stdin as one atomic batch through libnftables,
// prints what they list on stdout and libnftables' messages on stderr; exits 0 on success.
// Only stasis runs it (launcher/nat.cc), with rules of its own table.
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  size_t size = 0, cap = 4096;
  char* text = malloc(cap);
  if (!text) return 2;
  for (;;) {
    if (size + 1 >= cap) {
      cap *= 2;
      char* bigger = realloc(text, cap);
      if (!bigger) return 2;
      text = bigger;
    }
    size_t n = fread(text + size, 1, cap - size - 1, stdin);
    if (n == 0) break;
    size += n;
  }
  text[size] = 0;
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) {
    fprintf(stderr, "stasis-nft: cannot create an nftables context\n");
    return 2;
  }
  int rc = nft_run_cmd_from_buffer(ctx, text);
  nft_ctx_free(ctx);
  free(text);
  return rc == 0 ? 0 : 1;
}

"""The wallet client: encrypted keystores, node selection, local signing, job and result checks.

``dcent wallet new`` starts from a BIP-39 recovery phrase (24 words by default, 256 bits from the
OS, printed once and never stored); ``wallet restore`` turns the words back into the same key on any
machine. The key is SLIP-0010's Ed25519 derivation at ``m/44'/1'/0'/0'/0'`` (coin type 1, SLIP-44's
"testnet, all coins", until dcent has its own: a real chain's coin type would let a phrase shared
with that chain derive related keys). Both steps are the published algorithms, tested against
their published vectors, so another wallet derives the same address from the same words. A typo is
refused by the checksum before any password is asked for, and errors never echo the words.
``wallet export`` prints a wallet's raw seed after its password, which ``wallet import`` takes back.


Keystore files follow geth's design: scrypt (n=2^18, r=8, p=1; ``fast_kdf`` n=2^12 for tests only,
recorded in the file) and AES-256-GCM over the 32-byte seed with the file's metadata as associated
data, so editing the address or KDF parameters makes decryption fail. Writes are atomic (temp file
+ hard link, never overwriting) with mode 0600.
"""

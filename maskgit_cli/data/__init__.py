"""Stage 0, data: image folders, the lab's masks and its csv, generated masks. No models here."""

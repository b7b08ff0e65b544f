<code>
```python
# Draw the altitude from the apex C to the base AB, as a V-Thinker trajectory would.
image = Image.open(image_path).convert("RGB")
draw = ImageDraw.Draw(image)
A, B, C = (60, 200), (260, 200), (110, 50)
foot = (C[0], A[1])                      # AB is horizontal, so the foot is straight below C
draw.line([C, foot], fill=(30, 90, 220), width=3)
draw.rectangle([foot[0], foot[1] - 8, foot[0] + 8, foot[1]], outline=(30, 90, 220))
height = float(np.hypot(C[0] - foot[0], C[1] - foot[1]))
processed_path = "/mnt/data/temp_processed_images/altitude.png"
image.save(processed_path)
print(f"altitude = {height:.1f} px")
print(processed_path)
```
</code>
